"""Tests generated from the task registry: every task builds with every activation, trains, and
checks its knobs. Real-dataset tasks run on the tiny files that ``conftest.tiny_data`` writes."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from gradbench.axes import ACTIVATIONS, format_spec, list_activations
from gradbench.grid import Cell, SuiteError, expand, parse_suite
from gradbench.run import run_cell
from gradbench.tasks import TASKS, Task, TaskConfig, list_tasks, register_task, resolve_knobs
from gradbench.tasks.base import BATCH_SIZE_KNOB
from gradbench.tasks.image_datasets import DataOptions

# Knobs that make each task cheap enough to build a dozen times and train on a CPU in a test.
TINY_KNOBS: dict[str, dict] = {
    "mnist1d_mlp": {"depth": 2, "width": 16, "num_samples": 1000},
    "digits_mlp": {"depth": 2, "width": 16},
    "mnist_mlp": {"depth": 2, "width": 16},
    "fashion_mnist_mlp": {"depth": 2, "width": 16},
    "cifar10_mlp": {"depth": 2, "width": 16},
    "mnist1d_cnn": {"channels": 8, "num_samples": 1000},
    "mnist_2c2d": {"batch_size": 16},
    "fashion_mnist_2c2d": {"batch_size": 16},
    "cifar10_3c3d": {"batch_size": 16},
    "mnist1d_deep_cnn": {"depth": 8, "width": 4, "num_samples": 1000},
    "cifar10_deep_cnn": {"depth": 8, "width": 4, "batch_size": 16},
    "cifar10_resnet18": {"batch_size": 4, "train_eval_size": 50},
    **{f"adding_{cell}": {"length": 10, "width": 16, "num_train": 500} for cell in ("rnn", "lstm", "gru")},
    **{f"mnist1d_{cell}": {"width": 16, "num_samples": 1000} for cell in ("rnn", "lstm", "gru")},
}
# After 20 Adam steps the training loss must be below this fraction of its initial value. A few
# tasks start slowly (recurrent nets on MNIST-1D sit near ln 10 for a while; a plain deep CNN
# without normalisation barely moves at first, which is what the task is there to show): for
# them the test asks only that the loss went down.
SLOW_STARTERS = {"mnist1d_lstm", "mnist1d_gru", "cifar10_deep_cnn"}
# Adam at 0.01 with Kaiming init trains every task in 20 steps but one: ResNet-18 keeps
# torchvision's initialisation (Kaiming's fan-in gain on its output layer gives logits in the
# tens) and takes Adam's default step.
TRAINING = {"cifar10_resnet18": {"optimizers": ["adam"], "inits": ["default"]}}


def tiny(name: str) -> str:
    return format_spec(name, TINY_KNOBS.get(name, {}))


def test_every_task_has_tiny_knobs_that_resolve():
    for name in list_tasks():
        resolve_knobs(name, TINY_KNOBS.get(name, {}))  # raises for a stale entry
    assert set(TINY_KNOBS) <= set(list_tasks())


def _activation_cases() -> list[tuple[str, str | None]]:
    cases = []
    for name in list_tasks():
        if TASKS.get(name).uses_activation:
            cases += [(name, activation) for activation in list_activations()]
        else:
            cases.append((name, None))
    return cases


@pytest.mark.parametrize("name, activation", _activation_cases(), ids=lambda value: str(value))
def test_every_task_builds_with_every_activation_and_back_propagates(name, activation, tiny_data):
    task = TASKS.get(name)
    knobs = resolve_knobs(name, TINY_KNOBS.get(name, {}))
    knobs.pop(BATCH_SIZE_KNOB)
    torch.manual_seed(0)
    instance = task.build(TaskConfig(knobs, activation, {}, "default" if task.uses_init else None, {}, DataOptions(tiny_data.root)))
    model, data = instance.model, instance.data
    model.train()
    loss = instance.loss_fn(model(data.x_train[:6]), data.y_train[:6])
    loss.backward()
    assert loss.dim() == 0 and math.isfinite(loss.item())
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), parameter_name
    if activation is not None:
        # The activation axis replaces every ReLU: the chosen module is there, and no nn.ReLU
        # is left unless ReLU was chosen.
        chosen = ACTIVATIONS.get(activation).module_class
        assert any(isinstance(module, chosen) for module in model.modules())
        if activation != "relu":
            assert not any(type(module) is nn.ReLU for module in model.modules())
    assert instance.metric in ("accuracy", "loss")
    assert instance.metric == ("accuracy" if data.num_classes else "loss")
    assert instance.target is None or instance.target > 0


def _cell(name: str) -> Cell:
    overrides = {"tasks": [tiny(name)], "optimizers": ["adam[lr=0.01]"], "inits": ["kaiming_normal"], "steps": [20], "eval_every": 20}
    (only,) = expand(parse_suite("").with_overrides({**overrides, **TRAINING.get(name, {})}))
    return only


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_trains_20_steps_and_the_loss_goes_down(name, tiny_data):
    result = run_cell(_cell(name), data_options=DataOptions(tiny_data.root))
    assert result.status == "done", result.error
    first, last = result.evaluations[0].train_loss, result.evaluations[-1].train_loss
    assert math.isfinite(last)
    assert last < (first if name in SLOW_STARTERS else 0.97 * first), (first, last)
    assert len(result.history.layer_names) >= 1 and result.history.layer_grad_norms


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_rejects_a_knob_it_does_not_have(name):
    valid = ", ".join([*TASKS.get(name).knobs, BATCH_SIZE_KNOB, "order"])
    with pytest.raises(ValueError, match=re.escape(f"task {name!r} has no knob 'colour'; knobs: {valid}")):
        resolve_knobs(name, {"colour": 3})
    with pytest.raises(SuiteError, match=re.escape(f"--task: task {name!r} has no knob 'colour'")):
        expand(parse_suite("").with_overrides({"tasks": [f"{name}[colour=3]"]}))


def _bad_values() -> list[tuple[str, str, object, str]]:
    """(task, knob, bad value, message) for every knob of every task."""
    cases = []
    for name, task in TASKS.items():
        for key, default in [*task.knobs.items(), (BATCH_SIZE_KNOB, task.batch_size)]:
            choices = task.knob_choices.get(key)
            if choices:
                cases.append((name, key, "bach", f"invalid knob {key}='bach' for task {name!r}; choose from: {', '.join(choices)}"))
            elif isinstance(default, bool):
                cases.append((name, key, 1, f"invalid knob {key}=1 for task {name!r}: expected true or false"))
            elif isinstance(default, int):
                low = int(task.knob_bounds.get(key, (1, None))[0] or 0)
                cases.append((name, key, low - 1, f"invalid knob {key}={low - 1} for task {name!r}: expected an integer >= {low}"))
            elif isinstance(default, float):
                low, high = task.knob_bounds.get(key, (0, None))
                expected = f"a number >= {low:g}" + (f" and <= {high:g}" if high is not None else "")
                cases.append((name, key, -1.0, f"invalid knob {key}=-1.0 for task {name!r}: expected {expected}"))
        cases.append((name, "order", "random", f"invalid knob order='random' for task {name!r}; choose from: shuffled, fixed"))
    return cases


@pytest.mark.parametrize("name, key, value, message", _bad_values(), ids=lambda value: str(value)[:40])
def test_every_knob_rejects_a_bad_value_naming_it(name, key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_knobs(name, {key: value})


RULE_ERRORS = [
    ("cifar10_deep_cnn", {"depth": 21}, r"invalid knob depth=21 for task 'cifar10_deep_cnn': must be 6n \+ 2"),
    ("mnist1d_deep_cnn", {"depth": 2}, r"invalid knob depth=2 for task 'mnist1d_deep_cnn': must be 6n \+ 2"),
    ("adding_lstm", {"length": 1}, r"invalid knob length=1 for task 'adding_lstm': the adding problem needs at least 2 steps"),
    ("adding_rnn", {"nonlinearity": "sigmoid"}, r"invalid knob nonlinearity='sigmoid' for task 'adding_rnn'; choose from: tanh, relu"),
]


@pytest.mark.parametrize("name, knobs, pattern", RULE_ERRORS)
def test_knob_rules_beyond_type_are_checked(name, knobs, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_knobs(name, knobs)


def test_bare_none_is_the_none_choice():
    # The spec syntax reads a bare `none` as null; for a choice knob it means the choice.
    (cell,) = expand(parse_suite("").with_overrides({"tasks": ["mnist1d_mlp[norm=none,depth=3]"]}))
    assert dict(cell.task_knobs)["depth"] == 3 and "norm" not in dict(cell.task_knobs)
    (cell,) = expand(parse_suite("").with_overrides({"tasks": ["cifar10_resnet18[norm=none]"]}))
    assert dict(cell.task_knobs)["norm"] == "none"


def test_the_batch_size_knob_is_the_cells_batch_size():
    (by_knob,) = expand(parse_suite("").with_overrides({"tasks": ["mnist1d_mlp[batch_size=32]"]}))
    (by_axis,) = expand(parse_suite("").with_overrides({"tasks": ["mnist1d_mlp"], "batch_sizes": [32]}))
    assert by_knob.batch_size == 32 and BATCH_SIZE_KNOB not in dict(by_knob.task_knobs)
    assert by_knob.key == by_axis.key
    (default,) = expand(parse_suite("").with_overrides({"tasks": ["quadratic_deep"]}))
    assert default.batch_size == TASKS.get("quadratic_deep").batch_size == 128
    with pytest.raises(SuiteError, match=r"mnist1d_mlp\[batch_size=32\] sets batch_size, and so does batch_sizes \(--batch-size\)"):
        expand(parse_suite("").with_overrides({"tasks": ["mnist1d_mlp[batch_size=32]"], "batch_sizes": [64]}))


def test_cells_stored_before_the_task_library_keep_their_keys():
    """Keys computed with the core's first version (commit 933c16b), before mnist1d_mlp had its
    norm and residual knobs and before detailed records: stored results must still be found,
    not trained again. (The default record cadence has changed since, from every step to every
    10 with details every 100, so the old defaults are spelled out: a run that records other
    statistics is another cell.)"""
    old_defaults = {"record_every": 1, "detail_every": 0}
    before = {
        "de56e574a64983ed": {},
        "6022e5156ef2f35e": {"tasks": ["mnist1d_mlp[depth=3,width=32,num_samples=1000]"], "optimizers": ["adam"], "batch_sizes": [32]},
        "acaa9f31799b176f": {"tasks": ["linreg"], "optimizers": ["gd"]},
    }
    for key, overrides in before.items():
        (cell,) = expand(parse_suite("").with_overrides({**old_defaults, **overrides}))
        assert cell.key == key, overrides
    (changed,) = expand(parse_suite("").with_overrides({**old_defaults, "tasks": ["mnist1d_mlp[norm=batch]"]}))
    assert changed.key not in before and dict(changed.task_knobs)["norm"] == "batch"


def _linreg_like(**changes: object) -> Task:
    from dataclasses import replace

    return replace(TASKS.get("linreg"), name="test_plugin_task", **changes)


def test_a_knob_may_allow_zero_where_the_task_says_so():
    """Integer knobs are counts (>= 1) unless bounds say otherwise: a permutation seed may be 0."""
    task = _linreg_like(knobs={**TASKS.get("linreg").knobs, "permutation_seed": 0}, knob_bounds={"permutation_seed": (0, None)})
    register_task(task)
    try:
        assert resolve_knobs("test_plugin_task", {"permutation_seed": 0})["permutation_seed"] == 0
        with pytest.raises(ValueError, match=r"invalid knob permutation_seed=-1 for task 'test_plugin_task': expected an integer >= 0$"):
            resolve_knobs("test_plugin_task", {"permutation_seed": -1})
    finally:
        TASKS.unregister("test_plugin_task")


@pytest.mark.parametrize(
    "changes, pattern",
    [
        ({"knobs": {"dim": 0}}, r"task 'test_plugin_task': its default is invalid: invalid knob dim=0 for task 'test_plugin_task': expected an integer >= 1"),
        ({"knobs": {"dim": 3, "noise": -1.0}}, r"its default is invalid: invalid knob noise=-1.0"),
        ({"knobs": {"dim": 3}, "knob_bounds": {"width": (0, None)}}, r"choices or bounds for 'width', which is not one of its knobs \(dim\)"),
        ({"knobs": {"dim": 3}, "check_knobs": lambda knobs: ("dim", "must be even") if knobs["dim"] % 2 else None}, r"its default dim=3 breaks its own rule: must be even"),
        ({"batch_size": 0}, r"batch_size=0 must be an integer >= 1"),
    ],
)
def test_a_task_whose_defaults_break_its_own_rules_is_refused_when_registered(changes, pattern):
    """Before, such a task listed, then every run of it failed."""
    with pytest.raises(ValueError, match=pattern):
        register_task(_linreg_like(**changes))
    assert "test_plugin_task" not in TASKS
