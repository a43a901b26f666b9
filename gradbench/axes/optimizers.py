"""Registry of optimizers: every ``torch.optim`` algorithm the field compares, plus full-batch GD.

An entry names a ``torch.optim.Optimizer`` class and the defaults gradbench uses for it. Any
optimizer class can join in one line::

    gradbench.register_optimizer("lion", Lion, defaults={"lr": 1e-4}, description="Lion")

The built-in classes are named by path (``"torch.optim:SGD"``) and imported when one is first
built or checked, so listing the optimizers or reading their defaults imports no torch; a plugin
may register by path too.

Hyper-parameters are checked where they enter (``resolve_hyperparameters``), by type against the
defaults and then by constructing the optimizer on a dummy parameter, so torch's own argument
checks (``Invalid learning rate: -1.0``) run before any training starts.

References:
    Robbins & Monro, "A Stochastic Approximation Method", 1951 (SGD).
    Polyak, "Some methods of speeding up the convergence of iteration methods", 1964 (momentum).
    Sutskever et al., "On the importance of initialization and momentum in deep learning", 2013
    (Nesterov momentum for deep nets).
    Duchi et al., "Adaptive Subgradient Methods", JMLR 2011 (Adagrad).
    Tieleman & Hinton, Lecture 6.5 RMSprop, 2012.
    Zeiler, "ADADELTA", https://arxiv.org/abs/1212.5701.
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", https://arxiv.org/abs/1412.6980
    (Adam and Adamax).
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", https://arxiv.org/abs/1711.05101.
    Dozat, "Incorporating Nesterov Momentum into Adam", 2016 (NAdam).
    Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    https://arxiv.org/abs/1908.03265 (RAdam).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from gradbench._lazy import resolve
from gradbench.axes.registry import Registry
from gradbench.axes.specs import bounds_text, outside, plain_value

if TYPE_CHECKING:
    import torch

__all__ = [
    "OptimizerSpec",
    "OPTIMIZERS",
    "register_optimizer",
    "list_optimizers",
    "get_optimizer",
    "resolve_hyperparameters",
    "build_optimizer",
]


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Attributes:
        name: Registry name (``adam``).
        factory: The ``torch.optim.Optimizer`` subclass to construct, or its path
            (``"torch.optim:Adam"``), imported the first time ``optimizer_class`` is read.
        defaults: Hyper-parameters gradbench passes unless overridden; always holds ``lr``.
        description: One line for ``gradbench list optimizers``.
        full_batch: If true the runner feeds the whole training set every step (gradient
            descent); otherwise it draws mini-batches.
        needs_closure: ``step(closure)`` must be given a closure that recomputes the loss and
            its gradients (L-BFGS evaluates it several times per step).
        choices: For hyper-parameters that take one of a few values, those values.
        bounds: For number hyper-parameters torch's constructor does not check, ``(minimum,
            maximum)`` (``None``: open).
    """

    name: str
    factory: type[torch.optim.Optimizer] | str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    full_batch: bool = False
    needs_closure: bool = False
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The class (one registered by path is imported now, and checked to be an optimizer).

        Raises:
            ValueError: if the path does not import, or names no optimizer class.
        """
        if not isinstance(self.factory, str):
            return self.factory
        try:
            found = resolve(self.factory)
        except ValueError as error:
            raise ValueError(f"optimizer {self.name!r}: {error}") from None
        _check_optimizer_class(self.name, found)
        return found

    def signature_default(self, key: str) -> Any:
        """The optimizer class's own default for ``key`` (``None`` where it has none)."""
        parameter = inspect.signature(self.optimizer_class.__init__).parameters.get(key)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            return None
        return parameter.default

    def valid_keys(self) -> list[str]:
        """Keyword arguments the optimizer class names (besides ``params``), and gradbench's
        defaults (which a class taking ``**kwargs`` may accept without naming them)."""
        signature = inspect.signature(self.optimizer_class.__init__)
        named = [
            name
            for name, parameter in signature.parameters.items()
            if name not in ("self", "params")
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        ]
        return named + [key for key in self.defaults if key not in named]

    @property
    def takes_any_keyword(self) -> bool:
        """The class takes ``**kwargs``: any key may be given; its constructor judges it."""
        parameters = inspect.signature(self.optimizer_class.__init__).parameters.values()
        return any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")


def _check_optimizer_class(name: str, optimizer_class: Any) -> None:
    import torch

    if not (inspect.isclass(optimizer_class) and issubclass(optimizer_class, torch.optim.Optimizer)):
        raise ValueError(f"optimizer_class for {name!r} must be a torch.optim.Optimizer subclass, got {optimizer_class!r}")


def register_optimizer(
    name: str,
    optimizer_class: type[torch.optim.Optimizer] | str,
    *,
    defaults: Mapping[str, Any] | None = None,
    description: str = "",
    full_batch: bool = False,
    needs_closure: bool | None = None,
    choices: Mapping[str, tuple[Any, ...]] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    overwrite: bool = False,
) -> OptimizerSpec:
    """Register ``optimizer_class`` under ``name``.

    Args:
        name: Registry name, lower-case.
        optimizer_class: Any ``torch.optim.Optimizer`` subclass taking ``params`` first, or its
            path (``"mypackage.optim:Lion"``): imported when a run first needs it, if
            ``defaults`` holds ``lr`` and ``description`` and ``needs_closure`` are given
            (otherwise now, to read them from the class).
        defaults: Hyper-parameters to pass unless overridden. If ``lr`` is missing, the class's
            own default ``lr`` is used; a class without one must be given ``lr`` here.
        description: One line shown by ``gradbench list optimizers``.
        full_batch: Train on the whole training set every step (gradient descent).
        needs_closure: Its ``step`` needs a closure (default: when ``step``'s ``closure``
            argument has no default, as L-BFGS's has none).
        choices: For hyper-parameters that take one of a few values, those values (checked
            before anything runs).
        bounds: For number hyper-parameters, ``(minimum, maximum)`` (``None``: open), where
            torch's constructor does not check them and a bad one would fail the run.
        overwrite: Replace an existing entry of the same name.

    Raises:
        ValueError: if the class is not an optimizer or no learning rate can be found.
    """
    if not isinstance(optimizer_class, str):
        _check_optimizer_class(name, optimizer_class)
    merged = {}
    for key, value in (defaults or {}).items():
        try:  # a default is part of every cell's key (JSON) and hash
            merged[key] = plain_value(value)
        except ValueError:
            raise ValueError(f"optimizer {name!r} default {key}={value!r} cannot be part of a run's configuration: give a number, a string, true/false, none, or a tuple of them") from None
    spec = OptimizerSpec(
        name=name,
        factory=optimizer_class,
        defaults=MappingProxyType(merged),
        description=description,
        full_batch=full_batch,
        needs_closure=bool(needs_closure),
        choices=MappingProxyType(dict(choices or {})),
        bounds=MappingProxyType(dict(bounds or {})),
    )
    # What is left out is read from the class (a class given by path is imported for it).
    if "lr" not in merged:
        lr_default = inspect.signature(spec.optimizer_class.__init__).parameters.get("lr")
        if lr_default is None or not isinstance(lr_default.default, (int, float)):
            raise ValueError(f"optimizer {name!r} has no default learning rate: pass defaults={{'lr': ...}}")
        merged["lr"] = float(lr_default.default)
    if not description:
        description = _first_line(spec.optimizer_class.__doc__) or spec.optimizer_class.__name__
    if needs_closure is None:
        needs_closure = _step_needs_closure(spec.optimizer_class)
    spec = replace(spec, defaults=MappingProxyType(merged), description=description, needs_closure=needs_closure)
    return OPTIMIZERS.register(name, spec, overwrite=overwrite)


def _step_needs_closure(optimizer_class: type[torch.optim.Optimizer]) -> bool:
    """Whether ``step``'s ``closure`` has no default (L-BFGS's has none)."""
    closure = inspect.signature(optimizer_class.step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def get_optimizer(name: str) -> OptimizerSpec:
    return OPTIMIZERS.get(name)


def list_optimizers(pattern: str = "*") -> list[str]:
    """Registered optimizer names matching ``pattern`` (``"adam*"``)."""
    return OPTIMIZERS.names(pattern)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_type(spec: OptimizerSpec, key: str, value: Any) -> Any:
    """``value`` checked against the type of the default: gradbench's, else the optimizer class's
    own (``sgd[maximize=(true,)]`` is not a boolean). Where gradbench's default is a float, ints
    become floats, so ``sgd[lr=1]`` and ``sgd[lr=1.0]`` are one configuration; against the
    class's own defaults values are only checked, so that the keys of stored cells stay."""
    choices = spec.choices.get(key)
    if choices is not None:
        if value not in choices:
            shown = ", ".join("none" if choice is None else str(choice) for choice in choices)
            raise ValueError(f"invalid {spec.name} hyper-parameter {key}={value!r}; choose from: {shown}")
        return value
    bounds = spec.bounds.get(key)
    if bounds is not None and value is not None:
        low, high = bounds
        if not _is_number(value) or outside(value, low, high):
            raise ValueError(f"invalid {spec.name} hyper-parameter {key}={value!r}: expected a number {bounds_text(low, high)}")
    import torch  # checking a value is building the optimizer's configuration: torch's time

    registered = spec.defaults.get(key)
    default = registered if registered is not None else spec.signature_default(key)
    if default is None or isinstance(default, torch.Tensor):  # None: any value the class accepts
        return value
    coerce = registered is not None
    label = f"{spec.name} hyper-parameter {key}={value!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"invalid {label}: expected true or false")
    elif _is_number(default):
        if not _is_number(value):
            raise ValueError(f"invalid {label}: expected a number")
        if coerce and isinstance(default, float):
            return float(value)
    elif isinstance(default, tuple):
        if not (isinstance(value, tuple) and len(value) == len(default) and all(map(_is_number, value))):
            raise ValueError(f"invalid {label}: expected a tuple of {len(default)} numbers like {default!r}")
        if coerce:
            return tuple(float(v) if isinstance(d, float) else v for v, d in zip(value, default))
    return value


def resolve_hyperparameters(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full hyper-parameters of optimizer ``name``: its defaults updated by ``overrides``.

    Raises:
        ValueError: for an unknown optimizer or key, a value of the wrong type, a learning rate
            that is not a positive finite number, or anything torch's constructor rejects.
    """
    spec = get_optimizer(name)
    hyperparameters = dict(spec.defaults)
    valid = spec.valid_keys()
    for key, value in (overrides or {}).items():
        if key not in valid and not spec.takes_any_keyword:
            raise ValueError(f"optimizer {name!r} has no hyper-parameter {key!r}; valid: {', '.join(valid) or 'none'}")
        hyperparameters[key] = _check_type(spec, key, value)
    lr = hyperparameters["lr"]
    if not _is_number(lr) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"invalid learning rate lr={lr!r} for {name}: must be a positive number")
    # Let torch's own constructor check the values (negative eps, betas outside [0, 1), ...).
    import torch

    try:
        spec.optimizer_class([torch.zeros(1, requires_grad=True)], **hyperparameters)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"invalid hyper-parameters for {name} {hyperparameters}: {error}") from None
    return hyperparameters


def build_optimizer(
    name: str, parameters: Iterable[torch.nn.Parameter], hyperparameters: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """Construct optimizer ``name`` over ``parameters`` with already-resolved hyper-parameters."""
    return get_optimizer(name).optimizer_class(parameters, **hyperparameters)


def _register_builtins() -> None:
    # By path: imported when first built or checked. Each gives lr, its description and
    # needs_closure, which would otherwise be read from the class (tests check they agree).
    sgd = "torch.optim:SGD"
    register_optimizer(
        "gd", sgd, defaults={"lr": 0.1}, full_batch=True, needs_closure=False,
        description="full-batch gradient descent: every step uses the whole training set",
    )
    register_optimizer("sgd", sgd, defaults={"lr": 0.1}, needs_closure=False, description="mini-batch stochastic gradient descent (Robbins & Monro 1951)")
    register_optimizer(
        "momentum", sgd, needs_closure=False, defaults={"lr": 0.01, "momentum": 0.9},
        description="SGD with heavy-ball momentum 0.9 (Polyak 1964)",
    )
    register_optimizer(
        "nesterov", sgd, needs_closure=False, defaults={"lr": 0.01, "momentum": 0.9, "nesterov": True},
        description="SGD with Nesterov momentum 0.9 (Sutskever et al. 2013)",
    )
    register_optimizer("adam", "torch.optim:Adam", needs_closure=False, defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Adam (Kingma & Ba 2014)")
    register_optimizer(
        "adamw", "torch.optim:AdamW", needs_closure=False, defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
        description="Adam with decoupled weight decay (Loshchilov & Hutter 2017)",
    )
    register_optimizer("rmsprop", "torch.optim:RMSprop", needs_closure=False, defaults={"lr": 1e-3, "alpha": 0.99, "eps": 1e-8}, description="RMSprop (Tieleman & Hinton 2012)")
    register_optimizer("adagrad", "torch.optim:Adagrad", needs_closure=False, defaults={"lr": 0.01, "eps": 1e-10}, description="Adagrad (Duchi et al. 2011)")
    register_optimizer("adadelta", "torch.optim:Adadelta", needs_closure=False, defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6}, description="Adadelta (Zeiler 2012)")
    register_optimizer("adamax", "torch.optim:Adamax", needs_closure=False, defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Adamax, Adam with the infinity norm (Kingma & Ba 2014)")
    register_optimizer("nadam", "torch.optim:NAdam", needs_closure=False, defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Adam with Nesterov momentum (Dozat 2016)")
    register_optimizer("radam", "torch.optim:RAdam", needs_closure=False, defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Rectified Adam (Liu et al. 2019)")
    register_optimizer(
        "lbfgs", "torch.optim:LBFGS", needs_closure=True, defaults={"lr": 1.0, "max_iter": 20, "history_size": 10, "line_search_fn": "strong_wolfe"},
        choices={"line_search_fn": ("strong_wolfe", None)}, bounds={"max_iter": (1, None), "max_eval": (1, None), "history_size": (1, None)},
        description="L-BFGS (Nocedal 1980; Liu & Nocedal 1989): up to max_iter iterations a step (max_eval, default 1.25 x max_iter, loss evaluations), strong-Wolfe line search",
    )


_register_builtins()
