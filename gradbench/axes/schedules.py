"""Learning-rate schedules: how the learning rate moves over a run, a grid axis like optimizers.

A schedule is written ``name[key=value,...]`` (``--schedule cosine,step[gamma=0.5]``), built on
``torch.optim.lr_scheduler`` for the run's optimizer and its number of steps, and stepped once
after every optimizer step, outside the timed step. It scales the optimizer's own learning rate
(``lr``, the grid's ``--lr``): the schedule's factor at step ``t`` times ``lr`` is the rate step
``t`` uses. Parameters left at ``None`` are derived from the run's number of steps, so one spec
fits runs of any length. ``constant`` builds no scheduler at all and leaves a cell's key as it
was before schedules existed.

| schedule | factor at step t (1-based), T steps in all |
|---|---|
| ``constant`` | 1 |
| ``step[step_size, gamma=0.1]`` | gamma ** floor((t-1) / step_size); step_size ceil(T/3): two decays, at a third and two thirds |
| ``multistep[milestones, gamma=0.1]`` | gamma ** (milestones passed); milestones (T/2, 3T/4) |
| ``exponential[gamma]`` | gamma ** (t-1); gamma 0.01 ** (1/T): about a hundredth at the end |
| ``cosine[t_max, eta_min=0]`` | eta_min/lr + (1 - eta_min/lr)(1 + cos(pi (t-1)/t_max))/2; t_max T |
| ``cosine_restarts[t_0, t_mult=1, eta_min=0]`` | cosine restarted every t_0 steps (SGDR); t_0 T // 4 |
| ``linear_warmup[warmup, end_factor=0]`` | t/warmup up to warmup, then linearly down to end_factor at T; warmup T // 10 |
| ``cosine_warmup[warmup, eta_min=0]`` | t/warmup up to warmup, then cosine down to eta_min at T |
| ``inverse_sqrt[warmup=0]`` | 1/sqrt(t) (Kingma & Ba's alpha/sqrt(t)); with warmup w: t/w up to w, then sqrt(w/t) |
| ``polynomial[power=1, total]`` | (1 - (t-1)/total) ** power: (1/total) ** power at the last step; total T |
| ``onecycle[max_factor=10, pct_start=0.3, cycle_momentum=false]`` | 1cycle up to max_factor x lr and down (cosine) |

References:
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    https://arxiv.org/abs/1608.03983 (cosine, restarts).
    Goyal et al., "Accurate, Large Minibatch SGD", https://arxiv.org/abs/1706.02677 (warm-up).
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", https://arxiv.org/abs/1412.6980
    (alpha/sqrt(t) in their logistic-regression experiment).
    Smith & Topin, "Super-Convergence", https://arxiv.org/abs/1708.07120 (one-cycle).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gradbench.axes.registry import Registry

__all__ = [
    "ScheduleSpec", "SCHEDULES", "register_schedule", "list_schedules", "check_schedule", "check_schedule_on", "schedule_defaults", "build_schedule", "CONSTANT",
]

CONSTANT = "constant"

# (optimizer, the run's steps, parameters with defaults filled in) -> an LRScheduler.
ScheduleBuilder = Callable[[Any, int, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class ScheduleSpec:
    """One registered schedule.

    Attributes:
        name: Registry name.
        build: ``(optimizer, steps, params) -> torch.optim.lr_scheduler.LRScheduler``, or
            ``None`` for no scheduler (``constant``).
        description: One line for ``gradbench list schedules``.
        params: The parameters it accepts, with their defaults (``None``: derived from the
            run's steps).
        check: Rules on the parameters beyond their types: returns an error message or ``None``.
        floats: Parameters whose default is ``None`` but whose values are numbers: an integer
            is made a float, so ``gamma=1`` and ``gamma=1.0`` are one cell.
    """

    name: str
    build: ScheduleBuilder | None
    description: str
    params: Mapping[str, Any]
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    floats: frozenset[str] = frozenset()


SCHEDULES: Registry[ScheduleSpec] = Registry("schedule")


def register_schedule(
    name: str,
    build: ScheduleBuilder | None,
    *,
    description: str,
    params: Mapping[str, Any] | None = None,
    check: Callable[[Mapping[str, Any]], str | None] | None = None,
    floats: frozenset[str] = frozenset(),
    overwrite: bool = False,
) -> ScheduleSpec:
    return SCHEDULES.register(name, ScheduleSpec(name, build, description, dict(params or {}), check, floats), overwrite=overwrite)


def list_schedules(pattern: str = "*") -> list[str]:
    return SCHEDULES.names(pattern)


def schedule_defaults(name: str) -> dict[str, Any]:
    return dict(SCHEDULES.get(name).params)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_schedule(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The schedule's parameters with defaults filled in.

    Raises:
        ValueError: for an unknown schedule or key, or a value of the wrong type or range.
    """
    spec = SCHEDULES.get(name)
    merged = dict(spec.params)
    for key, value in (params or {}).items():
        if key not in spec.params:
            raise ValueError(f"schedule {name!r} has no parameter {key!r}; valid: {', '.join(spec.params) or 'none'}")
        default = spec.params[key]
        if value is not None and isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"invalid schedule {name} parameter {key}={value!r}: expected true or false")
        if value is not None and isinstance(default, float) and not _number(value):
            raise ValueError(f"invalid schedule {name} parameter {key}={value!r}: expected a number")
        number = isinstance(default, float) or key in spec.floats
        merged[key] = float(value) if number and _number(value) else value
    problem = spec.check(merged) if spec.check is not None else None
    if problem is not None:
        raise ValueError(f"invalid schedule {name}: {problem}")
    return merged


def check_schedule_on(spec: str, optimizer_name: str, optimizer: Any, steps: int) -> None:
    """Build schedule ``spec`` for ``optimizer`` (a throwaway one over a dummy parameter) and a
    run of ``steps`` steps, so that what torch refuses only then (``onecycle`` cycling the
    momentum of an optimizer without one) is refused before anything runs.

    Raises:
        ValueError: naming the schedule, the optimizer and torch's reason.
    """
    try:
        build_schedule(spec, optimizer, steps)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"schedule {spec} cannot drive {optimizer_name}: {message}") from None


def build_schedule(spec: str, optimizer: Any, steps: int) -> Any:
    """The scheduler of schedule ``spec`` (``cosine[eta_min=1e-4]``) for ``optimizer`` over a run
    of ``steps`` optimizer steps; ``None`` for ``constant``.

    Raises:
        ValueError: for a malformed or invalid spec.
    """
    from gradbench.axes.specs import parse_spec

    name, params = parse_spec(spec)
    merged = check_schedule(name, params)
    builder = SCHEDULES.get(name).build
    return None if builder is None else builder(optimizer, steps, merged)


# -- the built-in schedules ---------------------------------------------------------------


def _steps_param(key: str, low: int = 1) -> Callable[[Mapping[str, Any]], str | None]:
    def check(params: Mapping[str, Any]) -> str | None:
        value = params[key]
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            return f"{key}={value!r} must be an integer >= {low} (steps), or left out"
        return None

    return check


def _all(*checks: Callable[[Mapping[str, Any]], str | None]) -> Callable[[Mapping[str, Any]], str | None]:
    def check(params: Mapping[str, Any]) -> str | None:
        for one in checks:
            problem = one(params)
            if problem is not None:
                return problem
        return None

    return check


def _in(key: str, low: float, high: float, open_low: bool = False, open_high: bool = False) -> Callable[[Mapping[str, Any]], str | None]:
    def check(params: Mapping[str, Any]) -> str | None:
        value = params[key]
        if value is None:
            return None
        if not _number(value):
            return f"{key}={value!r}: expected a number"
        above = value > low if open_low else value >= low
        below = value < high if open_high else value <= high
        if not (above and below):
            left, right = "(" if open_low else "[", ")" if open_high else "]"
            return f"{key}={value!r} must be in {left}{low:g}, {high:g}{right}"
        return None

    return check


def _step(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import StepLR

    # By default two decays, a third and two thirds of the way through the run.
    return StepLR(optimizer, step_size=params["step_size"] or max(1, math.ceil(steps / 3)), gamma=params["gamma"])


def _milestones(params: Mapping[str, Any], steps: int) -> list[int]:
    given = params["milestones"]
    if given is None:
        return [max(1, steps // 2), max(1, 3 * steps // 4)]
    return sorted(int(m) for m in (given if isinstance(given, tuple) else (given,)))


def _check_milestones(params: Mapping[str, Any]) -> str | None:
    given = params["milestones"]
    if given is None:
        return None
    values = given if isinstance(given, tuple) else (given,)
    if not values or not all(_count(m) for m in values):
        return f"milestones={given!r} must be a tuple of integers >= 1 (steps), e.g. (500,750)"
    return None


def _multistep(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import MultiStepLR

    return MultiStepLR(optimizer, milestones=_milestones(params, steps), gamma=params["gamma"])


def _exponential(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import ExponentialLR

    return ExponentialLR(optimizer, gamma=params["gamma"] if params["gamma"] is not None else 0.01 ** (1.0 / max(1, steps)))


def _below_the_rate(optimizer: Any, eta_min: float) -> None:
    """An annealing floor above the rate would raise it: refused (expansion builds every
    schedule with its optimizer before anything runs)."""
    rate = min(group["lr"] for group in optimizer.param_groups)
    if eta_min > rate:
        raise ValueError(f"eta_min={eta_min:g} is above the learning rate {rate:g}: annealing would raise it")


def _cosine(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import CosineAnnealingLR

    _below_the_rate(optimizer, params["eta_min"])
    return CosineAnnealingLR(optimizer, T_max=params["t_max"] or steps, eta_min=params["eta_min"])


def _cosine_restarts(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

    _below_the_rate(optimizer, params["eta_min"])
    return CosineAnnealingWarmRestarts(optimizer, T_0=params["t_0"] or max(1, steps // 4), T_mult=params["t_mult"], eta_min=params["eta_min"])


def _warmup_steps(params: Mapping[str, Any], steps: int) -> int:
    return params["warmup"] if params["warmup"] is not None else max(1, steps // 10)


def _lambda(optimizer: Any, factor: Callable[[int], float]) -> Any:
    """A ``LambdaLR`` whose factor is given by the 1-based step about to be taken (LambdaLR
    counts from 0)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lambda done: factor(done + 1))


def _linear_warmup(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    warmup, end = _warmup_steps(params, steps), params["end_factor"]

    def factor(t: int) -> float:
        if t <= warmup:
            return t / warmup
        return 1.0 + (end - 1.0) * min(1.0, (t - warmup) / max(1, steps - warmup))

    return _lambda(optimizer, factor)


def _cosine_warmup(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    _below_the_rate(optimizer, params["eta_min"])
    warmup = _warmup_steps(params, steps)
    base = optimizer.param_groups[0]["lr"]
    floor = params["eta_min"] / base if base > 0 else 0.0

    def factor(t: int) -> float:
        if t <= warmup:
            return t / warmup
        progress = min(1.0, (t - warmup) / max(1, steps - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return _lambda(optimizer, factor)


def _inverse_sqrt(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    warmup = params["warmup"]

    def factor(t: int) -> float:
        if warmup and t <= warmup:
            return t / warmup
        return math.sqrt(max(1, warmup)) / math.sqrt(t)

    return _lambda(optimizer, factor)


def _polynomial(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import PolynomialLR

    return PolynomialLR(optimizer, total_iters=params["total"] or steps, power=params["power"])


def _onecycle(optimizer: Any, steps: int, params: Mapping[str, Any]) -> Any:
    from torch.optim.lr_scheduler import OneCycleLR

    peaks = [group["lr"] * params["max_factor"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=peaks, total_steps=max(2, steps), pct_start=params["pct_start"], cycle_momentum=params["cycle_momentum"])


def _register_builtins() -> None:
    register_schedule(CONSTANT, None, description="the optimizer's learning rate throughout (no scheduler)")
    register_schedule("step", _step, params={"step_size": None, "gamma": 0.1}, check=_all(_steps_param("step_size"), _in("gamma", 0, 1, open_low=True)),
                      description="multiply by gamma every step_size steps (default: a third of the run, so twice)")
    register_schedule("multistep", _multistep, params={"milestones": None, "gamma": 0.1}, check=_all(_check_milestones, _in("gamma", 0, 1, open_low=True)),
                      description="multiply by gamma at each milestone step (default T/2 and 3T/4)")
    register_schedule("exponential", _exponential, params={"gamma": None}, check=_in("gamma", 0, 1, open_low=True), floats=frozenset({"gamma"}),
                      description="multiply by gamma every step (default: about a hundredth of the rate at the end)")
    register_schedule("cosine", _cosine, params={"t_max": None, "eta_min": 0.0}, check=_all(_steps_param("t_max"), _in("eta_min", 0, math.inf)),
                      description="cosine annealing from the rate to eta_min over t_max steps (default T; Loshchilov & Hutter 2017)")
    register_schedule("cosine_restarts", _cosine_restarts, params={"t_0": None, "t_mult": 1, "eta_min": 0.0},
                      check=_all(_steps_param("t_0"), _steps_param("t_mult"), _in("eta_min", 0, math.inf)),
                      description="cosine annealing restarted every t_0 steps, each cycle t_mult times longer (SGDR)")
    register_schedule("linear_warmup", _linear_warmup, params={"warmup": None, "end_factor": 0.0},
                      check=_all(_steps_param("warmup"), _in("end_factor", 0, 1)),
                      description="linear warm-up over warmup steps (default T // 10), then linear decay to end_factor x the rate")
    register_schedule("cosine_warmup", _cosine_warmup, params={"warmup": None, "eta_min": 0.0}, check=_all(_steps_param("warmup"), _in("eta_min", 0, math.inf)),
                      description="linear warm-up over warmup steps (default T // 10), then cosine decay to eta_min")
    register_schedule("inverse_sqrt", _inverse_sqrt, params={"warmup": 0}, check=_steps_param("warmup", low=0),
                      description="rate / sqrt(t), Kingma & Ba's alpha/sqrt(t); with warmup w, linear up to w then sqrt(w/t)")
    register_schedule("polynomial", _polynomial, params={"power": 1.0, "total": None}, check=_all(_steps_param("total"), _in("power", 0, math.inf, open_low=True)),
                      description="(1 - t/total) ** power, down towards 0 over total steps (default T)")
    register_schedule("onecycle", _onecycle, params={"max_factor": 10.0, "pct_start": 0.3, "cycle_momentum": False},
                      check=_all(_in("max_factor", 1, math.inf), _in("pct_start", 0, 1, open_low=True, open_high=True)),
                      description="one cycle: up to max_factor x the rate over pct_start of the run, then down by cosine (Smith & Topin 2019)")


_register_builtins()
