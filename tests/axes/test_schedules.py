"""Learning-rate schedules: each one's rates against torch's own scheduler or the formula it
states, the rate a run stores at each evaluation, canonical keys, and bad specs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler

from gradbench.axes.schedules import SCHEDULES, build_schedule, check_schedule, list_schedules
from gradbench.grid import SuiteError, expand, parse_suite
from gradbench.run import run_cell

torch.set_num_threads(1)
STEPS = 40
LR = 0.1


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=LR, momentum=0.9)


def _rates(scheduler: object, optimizer: torch.optim.Optimizer, steps: int = STEPS) -> list[float]:
    """The rate each of ``steps`` steps uses, stepping the scheduler after each, as the runner does."""
    rates = []
    for step in range(1, steps + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None and step < steps:
            scheduler.step()
    return rates


# spec -> torch's own scheduler with the arguments the spec's defaults stand for (T = 40 steps).
AGAINST_TORCH = {
    "step": lambda o: lr_scheduler.StepLR(o, step_size=14, gamma=0.1),  # ceil(40 / 3): two decays
    "step[step_size=5,gamma=0.5]": lambda o: lr_scheduler.StepLR(o, step_size=5, gamma=0.5),
    "multistep": lambda o: lr_scheduler.MultiStepLR(o, milestones=[20, 30], gamma=0.1),
    "multistep[milestones=(5,25),gamma=0.3]": lambda o: lr_scheduler.MultiStepLR(o, milestones=[5, 25], gamma=0.3),
    "exponential": lambda o: lr_scheduler.ExponentialLR(o, gamma=0.01 ** (1 / STEPS)),
    "cosine": lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.0),
    "cosine[eta_min=0.001,t_max=20]": lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.001),
    "cosine_restarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=1, eta_min=0.0),
    "cosine_restarts[t_0=5,t_mult=2]": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2),
    "polynomial[power=2.0]": lambda o: lr_scheduler.PolynomialLR(o, total_iters=STEPS, power=2.0),
    "onecycle": lambda o: lr_scheduler.OneCycleLR(o, max_lr=10 * LR, total_steps=STEPS, pct_start=0.3, cycle_momentum=False),
    "onecycle[cycle_momentum=true,max_factor=4.0]": lambda o: lr_scheduler.OneCycleLR(o, max_lr=4 * LR, total_steps=STEPS, cycle_momentum=True),
}


@pytest.mark.parametrize("spec", list(AGAINST_TORCH))
def test_rates_equal_torchs_own_scheduler(spec):
    ours, theirs = _optimizer(), _optimizer()
    assert _rates(build_schedule(spec, ours, STEPS), ours) == pytest.approx(_rates(AGAINST_TORCH[spec](theirs), theirs), rel=1e-12)


# spec -> the rate of 1-based step t, as the module's table states it.
FORMULAS = {
    "constant": lambda t: LR,
    "inverse_sqrt": lambda t: LR / math.sqrt(t),  # Kingma & Ba's alpha / sqrt(t)
    "inverse_sqrt[warmup=4]": lambda t: LR * (t / 4 if t <= 4 else math.sqrt(4 / t)),
    "linear_warmup": lambda t: LR * (t / 4 if t <= 4 else 1 - (t - 4) / 36),
    "linear_warmup[warmup=10,end_factor=0.5]": lambda t: LR * (t / 10 if t <= 10 else 1 - 0.5 * (t - 10) / 30),
    "cosine_warmup[warmup=8,eta_min=0.01]": lambda t: LR * (t / 8) if t <= 8 else 0.01 + (LR - 0.01) * 0.5 * (1 + math.cos(math.pi * (t - 8) / 32)),
}


@pytest.mark.parametrize("spec", list(FORMULAS))
def test_rates_follow_the_stated_formula(spec):
    optimizer = _optimizer()
    assert _rates(build_schedule(spec, optimizer, STEPS), optimizer) == pytest.approx([FORMULAS[spec](t) for t in range(1, STEPS + 1)], rel=1e-12)


@pytest.mark.parametrize("name", list_schedules())
def test_every_schedule_builds_and_a_run_stores_the_rate_of_every_evaluation(name):
    """The rate at evaluation step k is the one step k used (step 0: the first step's)."""
    (cell,) = expand(parse_suite(f'tasks = ["linreg"]\nsteps = 20\neval_every = 5\nschedules = ["{name}"]'))
    result = run_cell(cell)
    assert result.status == "done", result.error
    optimizer = _optimizer()
    expected = _rates(build_schedule(name, optimizer, 20), optimizer, 20)
    assert [e.step for e in result.evaluations] == [0, 5, 10, 15, 20]
    assert [e.lr for e in result.evaluations] == pytest.approx([expected[0]] + [expected[k - 1] for k in (5, 10, 15, 20)], rel=1e-12)
    if name == "constant":
        assert cell.schedule == "constant" and "schedule" not in cell.config()


def test_constant_and_the_defaults_spelled_out_keep_one_key():
    def key(*schedules: str) -> list[str]:
        suite = parse_suite('tasks = ["linreg"]\nsteps = 20').with_overrides({"schedules": list(schedules)} if schedules else {})
        return [cell.key for cell in expand(suite)]

    assert key() == key("constant")
    (cosine,) = key("cosine")
    assert key("cosine[eta_min=0.0,t_max=none]") == [cosine] and cosine not in key()
    assert [cell.schedule for cell in expand(parse_suite('tasks = ["linreg"]\nschedules = ["step[gamma=0.1]", "step[gamma=0.5]"]'))] == ["step", "step[gamma=0.5]"]


@pytest.mark.parametrize("spec, pattern", [
    ("cosin", r"unknown schedule 'cosin' \(did you mean 'cosine'\?\)"),
    ("step[gamma=2]", r"invalid schedule step: gamma=2.0 must be in \(0, 1\]"),
    ("step[step_size=0]", r"step_size=0 must be an integer >= 1"),
    ("cosine[width=3]", r"schedule 'cosine' has no parameter 'width'; valid: t_max, eta_min"),
    ("multistep[milestones=(5,x)]", r"milestones=\(5, 'x'\) must be a tuple of integers >= 1"),
    ("onecycle[cycle_momentum=1]", r"cycle_momentum=1: expected true or false"),
    ("onecycle[pct_start=1.0]", r"pct_start=1.0 must be in \(0, 1\)"),
    ("exponential[gamma=fast]", r"gamma='fast': expected a number"),
])
def test_bad_specs_are_one_suite_error_naming_the_value(spec, pattern):
    with pytest.raises(SuiteError, match=pattern):
        expand(parse_suite(f'tasks = ["linreg"]\nschedules = ["{spec}"]'))
    with pytest.raises(ValueError, match=pattern):
        from gradbench.axes.specs import parse_spec

        check_schedule(*parse_spec(spec))


@pytest.mark.parametrize("optimizer, spec, pattern", [
    ("adagrad", "onecycle[cycle_momentum=true]", r"schedule onecycle\[cycle_momentum=true\] cannot drive adagrad\[.*\]: optimizer must support momentum"),
    ("sgd", "cosine[eta_min=0.5]", r"cannot drive sgd\[lr=0.1\]: eta_min=0.5 is above the learning rate 0.1: annealing would raise it"),
    ("sgd", "cosine_warmup[eta_min=1.0]", r"eta_min=1 is above the learning rate 0.1"),
])
def test_what_torch_refuses_only_with_the_optimizer_is_refused_before_anything_runs(optimizer, spec, pattern):
    """These failed every run; now the grid builds each schedule with its optimizer first."""
    with pytest.raises(SuiteError, match=pattern):
        expand(parse_suite(f'tasks = ["linreg"]\noptimizers = ["{optimizer}"]\nschedules = ["{spec}"]'))
    (cell,) = expand(parse_suite('tasks = ["linreg"]\noptimizers = ["momentum"]\nschedules = ["onecycle[cycle_momentum=true]"]'))
    assert cell.schedule == "onecycle[cycle_momentum=true]"  # an optimizer with momentum takes it


def test_one_milestone_alone_and_integer_floats_canonicalise():
    optimizer = _optimizer()
    assert _rates(build_schedule("multistep[milestones=5]", optimizer, 10), optimizer, 10) == pytest.approx([LR] * 5 + [LR / 10] * 5)
    keys = {cell.key for cell in expand(parse_suite('tasks = ["linreg"]\nschedules = ["exponential[gamma=1]", "exponential[gamma=1.0]"]'))}
    assert len(keys) == 1


def test_every_registered_schedule_has_a_description_and_list_shows_it():
    from gradbench.cli import main

    assert all(SCHEDULES.get(name).description for name in list_schedules())
    assert main(["list", "schedules"]) == 0
