"""Tests for gradbench.axes.optimizers: the optimizer registry and hyper-parameter checks."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from gradbench.axes.optimizers import OPTIMIZERS, build_optimizer, get_optimizer, list_optimizers, register_optimizer, resolve_hyperparameters
from gradbench.grid import expand, parse_suite
from optimizer_training import train as _train

torch.set_num_threads(1)

# Learning rates that differ from the registered defaults in the convergence test, and why.
# RAdam's variance rectification acts as a warm-up over ~1/(1 - beta2) = 1000 steps: at its
# default lr=1e-3 it only reaches ~0.76x the initial loss in 200 steps (Adam: ~0.17x), so it
# gets 10x the default here. Muon with its AdamW companion at lr=1e-3 reaches 0.64x, so it
# gets 10x too. Every other optimizer uses its registered defaults unchanged.
LR_OVERRIDES = {"radam": 1e-2, "muon": 1e-2}

# The torch.optim entries; other packages' are trained by test_optimizer_catalog.py.
TORCH_OPTIMIZERS = [name for name in list_optimizers() if get_optimizer(name).source == "torch.optim"]


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(name):
    overrides = {"lr": LR_OVERRIDES[name]} if name in LR_OVERRIDES else {}
    hyperparameters = resolve_hyperparameters(name, overrides)
    initial, final = _train(name, hyperparameters)
    assert math.isfinite(final)
    assert final < 0.5 * initial, f"{name}: loss {initial:.4f} -> {final:.4f}"


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_every_optimizer_with_maximize_raises_the_loss(name):
    # The sign check: the same optimizer told to maximise must not lower the loss. Guards
    # against a test above that would pass with any update (e.g. weight decay shrinking to 0).
    if "maximize" not in get_optimizer(name).valid_keys():
        pytest.skip(f"{name} has no maximize flag")
    overrides = {"maximize": True}
    if name in LR_OVERRIDES:
        overrides["lr"] = LR_OVERRIDES[name]
    initial, final = _train(name, resolve_hyperparameters(name, overrides), steps=20)
    assert final > initial or (name == "lbfgs" and not math.isfinite(final))  # L-BFGS climbs until it overflows


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_defaults_resolve_and_build(name):
    spec = get_optimizer(name)
    hyperparameters = resolve_hyperparameters(name)
    assert hyperparameters == dict(spec.defaults)
    assert hyperparameters["lr"] > 0
    assert set(hyperparameters) <= set(spec.valid_keys())
    optimizer = build_optimizer(name, [nn.Parameter(torch.zeros(3, 3))], hyperparameters)  # a matrix: Muon takes it
    assert isinstance(optimizer, spec.optimizer_class)
    assert optimizer.param_groups[0]["lr"] == hyperparameters["lr"]
    assert spec.description


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_only_gd_is_full_batch(name):
    assert get_optimizer(name).full_batch is (name == "gd")


def test_builtin_names():
    assert list_optimizers()[:2] == ["gd", "sgd"]
    assert {"gd", "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam"} <= set(list_optimizers())
    assert list_optimizers("adam*")[:3] == ["adam", "adamw", "adamax"]  # torch.optim first, then the catalogue's
    assert list_optimizers("*adam")[:3] == ["adam", "nadam", "radam"]


def test_defaults_are_read_only():
    with pytest.raises(TypeError):
        get_optimizer("adam").defaults["lr"] = 1.0  # type: ignore[index]


def test_overrides_are_applied_and_defaults_untouched():
    resolved = resolve_hyperparameters("adam", {"lr": 3e-4, "betas": (0.8, 0.9), "weight_decay": 0.1, "amsgrad": True})
    assert resolved == {"lr": 3e-4, "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.1, "amsgrad": True}
    assert dict(get_optimizer("adam").defaults) == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
    assert resolve_hyperparameters("sgd", {"lr": 1}) == {"lr": 1}  # an int is a number


# --------------------------------------------------------------------------- error table

RESOLVE_ERRORS = [
    # (optimizer, overrides, regex)
    ("adamm", {}, r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); choose from: gd, sgd,"),
    ("adam", {"lrr": 0.1}, r"optimizer 'adam' has no hyper-parameter 'lrr'; valid: lr, betas, eps, weight_decay"),
    ("sgd", {"betas": (0.9, 0.99)}, r"no hyper-parameter 'betas'"),
    ("adam", {"lr": "abc"}, r"adam hyper-parameter lr='abc'.*expected a number"),
    ("adam", {"lr": True}, r"lr=True.*expected a number"),
    ("adam", {"lr": -1e-3}, r"invalid learning rate lr=-0.001"),
    ("adam", {"lr": 0}, r"invalid learning rate lr=0"),
    ("adam", {"lr": 0.0}, r"invalid learning rate lr=0.0"),
    ("adam", {"lr": math.nan}, r"invalid learning rate lr=nan"),
    ("sgd", {"lr": math.inf}, r"invalid learning rate lr=inf"),
    ("adam", {"betas": (0.9,)}, r"betas=\(0.9,\).*tuple of 2 numbers"),
    ("adam", {"betas": (0.9, 0.99, 0.999)}, r"betas=\(0.9, 0.99, 0.999\).*tuple of 2 numbers"),
    ("adam", {"betas": 0.9}, r"betas=0.9.*tuple of 2 numbers"),
    ("adam", {"betas": ("a", "b")}, r"tuple of 2 numbers"),
    ("adam", {"betas": [0.9, 0.99]}, r"tuple of 2 numbers"),
    ("adam", {"eps": -1e-8}, r"Invalid epsilon value: -1e-08"),  # torch's own check
    ("adam", {"betas": (1.5, 0.999)}, r"Invalid beta parameter at index 0"),  # torch's own check
    ("rmsprop", {"alpha": -0.5}, r"Invalid alpha value"),  # torch's own check
    ("momentum", {"momentum": -0.5}, r"Invalid momentum value"),
    ("nesterov", {"nesterov": "yes"}, r"nesterov=.*expected true or false"),
    ("nesterov", {"momentum": 0.0}, r"Nesterov momentum requires a momentum and zero dampening"),
    # Checked against the class's own defaults where gradbench sets none (maximize=(true,) ran
    # as gradient ascent before: a non-empty tuple is truthy).
    ("adam", {"weight_decay": "lots"}, r"invalid adam hyper-parameter weight_decay='lots': expected a number"),
    ("sgd", {"maximize": (True,)}, r"invalid sgd hyper-parameter maximize=\(True,\): expected true or false"),
    ("sgd", {"maximize": "x"}, r"maximize='x': expected true or false"),
    ("sgd", {"dampening": (1,)}, r"dampening=\(1,\): expected a number"),
    ("adam", {"amsgrad": 1}, r"amsgrad=1: expected true or false"),
]


@pytest.mark.parametrize("name, overrides, pattern", RESOLVE_ERRORS)
def test_resolve_hyperparameters_errors(name, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_hyperparameters(name, overrides)


def test_values_checked_against_the_class_defaults_keep_their_type_and_the_cell_its_key():
    """Only gradbench's own defaults make ints floats: against the class's defaults a value is
    checked, not converted, so cells stored before the check keep their keys."""
    assert type(resolve_hyperparameters("nadam", {"momentum_decay": 1})["momentum_decay"]) is int  # the class's default is 4e-3
    assert type(resolve_hyperparameters("sgd", {"lr": 1})["lr"]) is float  # gradbench's default for lr


def test_unknown_optimizer_lists_every_choice():
    with pytest.raises(ValueError) as info:
        resolve_hyperparameters("rmsporp")
    message = str(info.value)
    assert "did you mean 'rmsprop'" in message
    for name in list_optimizers():
        assert name in message


def test_unknown_key_lists_every_valid_key():
    with pytest.raises(ValueError) as info:
        resolve_hyperparameters("adamw", {"weight_decya": 0.1})
    message = str(info.value)
    for key in get_optimizer("adamw").valid_keys():
        assert key in message
    assert "'weight_decya'" in message


# --------------------------------------------------------------------------- register_optimizer


class _HalfStepSGD(torch.optim.Optimizer):
    """Plain gradient descent with a scale.

    A test optimizer.
    """

    def __init__(self, params, lr=0.05, scale=1.0):
        super().__init__(params, {"lr": lr, "scale": scale})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=-group["lr"] * group["scale"])


@pytest.fixture
def custom_optimizer():
    name = "test_half_step_sgd"
    assert name not in OPTIMIZERS
    spec = register_optimizer(name, _HalfStepSGD)  # the one line
    try:
        yield name, spec
    finally:
        OPTIMIZERS.unregister(name)
    assert name not in OPTIMIZERS


def test_register_custom_optimizer_in_one_line(custom_optimizer):
    name, spec = custom_optimizer
    assert name in list_optimizers()
    assert get_optimizer(name) is spec
    assert spec.optimizer_class is _HalfStepSGD
    assert dict(spec.defaults) == {"lr": 0.05}  # read from the signature
    assert spec.description == "Plain gradient descent with a scale."  # docstring's first line
    assert spec.full_batch is False
    assert spec.valid_keys() == ["lr", "scale"]
    assert resolve_hyperparameters(name, {"scale": 2.0}) == {"lr": 0.05, "scale": 2.0}
    with pytest.raises(ValueError, match=r"no hyper-parameter 'momentum'; valid: lr, scale"):
        resolve_hyperparameters(name, {"momentum": 0.9})
    with pytest.raises(ValueError, match="invalid learning rate"):
        resolve_hyperparameters(name, {"lr": -1.0})
    initial, final = _train(name, resolve_hyperparameters(name, {"lr": 0.1}))
    assert final < 0.5 * initial


def test_register_with_explicit_defaults_and_full_batch():
    name = "test_explicit_defaults"
    try:
        spec = register_optimizer(name, torch.optim.SGD, defaults={"lr": 0.3, "momentum": 0.5}, description="d", full_batch=True)
        assert dict(spec.defaults) == {"lr": 0.3, "momentum": 0.5}
        assert spec.full_batch and spec.description == "d"
        with pytest.raises(ValueError, match="already registered"):
            register_optimizer(name, torch.optim.Adam)
        replaced = register_optimizer(name, torch.optim.Adam, overwrite=True)
        assert get_optimizer(name) is replaced
        assert replaced.defaults["lr"] == 1e-3  # torch.optim.Adam's own default
    finally:
        OPTIMIZERS.unregister(name)


def test_registering_builtin_name_again_is_an_error():
    before = get_optimizer("adam")
    with pytest.raises(ValueError, match="optimizer 'adam' is already registered"):
        register_optimizer("adam", torch.optim.SGD)
    assert get_optimizer("adam") is before


class _NoDefaultLr(torch.optim.Optimizer):
    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):  # pragma: no cover - never stepped
        pass


def test_optimizer_without_default_lr_needs_one():
    name = "test_no_default_lr"
    with pytest.raises(ValueError, match=r"optimizer 'test_no_default_lr' has no default learning rate"):
        register_optimizer(name, _NoDefaultLr)
    assert name not in OPTIMIZERS
    try:
        spec = register_optimizer(name, _NoDefaultLr, defaults={"lr": 0.2})
        assert spec.defaults["lr"] == 0.2
        assert resolve_hyperparameters(name) == {"lr": 0.2}
    finally:
        OPTIMIZERS.unregister(name)


@pytest.mark.parametrize("default", [lambda step: 1.0, {1, 2}, {"a": 1}, 1j, b"x", torch.tensor(1.0)], ids=["function", "set", "dict", "complex", "bytes", "tensor"])
def test_a_default_a_cell_cannot_hold_is_refused_at_registration(default):
    """Defaults are part of every cell's key (JSON) and hash: refused when registered, in one
    line, rather than when a grid is expanded."""
    name = "test_bad_default"
    with pytest.raises(ValueError, match=r"optimizer 'test_bad_default' default weight_decay=.* cannot be part of a run's configuration: give a number"):
        register_optimizer(name, torch.optim.SGD, defaults={"lr": 0.1, "weight_decay": default})
    assert name not in OPTIMIZERS


def test_list_defaults_are_kept_as_tuples():
    name = "test_list_default"
    try:
        spec = register_optimizer(name, torch.optim.Adam, defaults={"betas": [0.8, 0.9]})
        assert spec.defaults["betas"] == (0.8, 0.9)
    finally:
        OPTIMIZERS.unregister(name)


@pytest.mark.parametrize(
    "not_an_optimizer",
    [dict, nn.Linear, object, torch.Tensor, lambda params, lr=0.1: None, "torch.nn:Linear", torch.optim.Optimizer.__init__],
    ids=["dict", "nn.Linear", "object", "Tensor", "lambda", "path", "function"],
)
def test_non_optimizer_classes_are_rejected(not_an_optimizer):
    name = "test_not_an_optimizer"
    with pytest.raises(ValueError, match=r"must be a torch.optim.Optimizer subclass"):
        register_optimizer(name, not_an_optimizer)
    assert name not in OPTIMIZERS


def test_a_name_that_is_no_path_is_rejected():
    with pytest.raises(ValueError, match=r"invalid path 'adam': expected 'package.module:attribute'"):
        register_optimizer("test_not_a_path", "adam")
    assert "test_not_a_path" not in OPTIMIZERS


def test_a_class_registered_by_path_is_imported_when_first_needed_and_checked_then():
    """With lr, description and needs_closure given, nothing is imported at registration; the
    class is checked when a run first needs it."""
    name, wrong = "test_by_path", "test_by_path_wrong"
    try:
        spec = register_optimizer(name, "torch.optim:Adagrad", defaults={"lr": 0.5}, description="by path", needs_closure=False)
        assert spec.factory == "torch.optim:Adagrad" and spec.optimizer_class is torch.optim.Adagrad
        assert resolve_hyperparameters(name, {"lr_decay": 0.1})["lr_decay"] == 0.1
        register_optimizer(wrong, "torch.nn:Linear", defaults={"lr": 0.5}, description="not one", needs_closure=False)
        with pytest.raises(ValueError, match=r"must be a torch.optim.Optimizer subclass"):
            resolve_hyperparameters(wrong)
        register_optimizer(wrong, "torch.optim:NoSuchOptimizer", defaults={"lr": 0.5}, description="missing", needs_closure=False, overwrite=True)
        with pytest.raises(ValueError, match=r"optimizer 'test_by_path_wrong': cannot import 'torch.optim:NoSuchOptimizer'"):
            resolve_hyperparameters(wrong)
    finally:
        for registered in (name, wrong):
            if registered in OPTIMIZERS:
                OPTIMIZERS.unregister(registered)


def test_builtins_declare_what_their_class_would_say():
    """The built-ins are registered by path with description, lr and needs_closure given, so
    that nothing imports torch: what they declare must be what the class says."""
    from gradbench.axes.optimizers import _step_needs_closure

    for name in TORCH_OPTIMIZERS:
        spec = get_optimizer(name)
        if isinstance(spec.factory, str):
            assert spec.needs_closure == _step_needs_closure(spec.optimizer_class), name
            assert spec.description and "lr" in spec.defaults, name


def test_optimizer_instance_is_rejected():
    instance = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"must be a torch.optim.Optimizer subclass"):
        register_optimizer("test_instance", instance)  # type: ignore[arg-type]
    assert "test_instance" not in OPTIMIZERS


def test_invalid_registry_name_is_rejected():
    with pytest.raises(ValueError, match=r"invalid optimizer name 'My-Opt'"):
        register_optimizer("My-Opt", torch.optim.SGD)


class _BlankDocstring(torch.optim.SGD):
    """   """


def test_blank_docstring_falls_back_to_class_name():
    name = "test_blank_doc"
    try:
        spec = register_optimizer(name, _BlankDocstring)
        assert spec.description == "_BlankDocstring"
    finally:
        if name in OPTIMIZERS:
            OPTIMIZERS.unregister(name)


def test_error_messages_name_the_optimizer():
    for name in ("adam", "sgd"):
        with pytest.raises(ValueError, match=re.escape(name)):
            resolve_hyperparameters(name, {"lr": -1})


class _KeywordsOnly(torch.optim.Optimizer):
    """An optimizer class that takes its hyper-parameters as **kwargs (as some libraries do)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, {"lr": 0.1, "momentum": 0.0, **kwargs})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data.add_(p.grad, alpha=-group["lr"])


def test_an_optimizer_taking_keyword_arguments_accepts_lr_and_its_own_keys():
    """Before, its valid keys were an empty list, so --lr was refused ("valid: ")."""
    name = "test_keywords_only"
    register_optimizer(name, _KeywordsOnly, defaults={"lr": 0.1})
    try:
        assert resolve_hyperparameters(name, {"lr": 0.5, "momentum": 0.9}) == {"lr": 0.5, "momentum": 0.9}
        (cell,) = expand(parse_suite('tasks = ["linreg"]\nsteps = 3\nlrs = [0.01]').with_overrides({"optimizers": [f"{name}[momentum=0.5]"]}))
        assert dict(cell.hyperparameters) == {"lr": 0.01, "momentum": 0.5}
    finally:
        OPTIMIZERS.unregister(name)


def test_closure_optimizers_are_known_by_their_step_signature():
    assert get_optimizer("lbfgs").needs_closure
    assert not any(get_optimizer(name).needs_closure for name in TORCH_OPTIMIZERS if name != "lbfgs")


@pytest.mark.parametrize("key", ["max_iter", "max_eval", "history_size"])
def test_lbfgs_counts_are_bounded_where_torch_would_fail_or_do_nothing_at_run_time(key):
    with pytest.raises(ValueError, match=rf"invalid lbfgs hyper-parameter {key}=0: expected a number >= 1$"):
        resolve_hyperparameters("lbfgs", {key: 0})
    assert resolve_hyperparameters("lbfgs", {key: 3})[key] == 3


def test_lbfgs_line_search_is_one_of_its_choices():
    assert resolve_hyperparameters("lbfgs", {"line_search_fn": None})["line_search_fn"] is None
    with pytest.raises(ValueError, match=r"invalid lbfgs hyper-parameter line_search_fn='armijo'; choose from: strong_wolfe, none$"):
        resolve_hyperparameters("lbfgs", {"line_search_fn": "armijo"})
