"""Tests for gradbench.axes.registry: the generic name -> entry registry."""

from __future__ import annotations

import re

import pytest
import torch

from gradbench.axes import parse_spec
from gradbench.axes.registry import Registry, closest_match

torch.set_num_threads(1)


@pytest.fixture
def registry() -> Registry[int]:
    reg: Registry[int] = Registry("widget")
    for index, name in enumerate(["alpha", "alpine", "beta", "gamma_2", "delta"]):
        reg.register(name, index)
    return reg


def test_register_returns_entry_and_get_returns_it():
    reg: Registry[object] = Registry("widget")
    entry = object()
    assert reg.register("thing", entry) is entry
    assert reg.get("thing") is entry
    assert "thing" in reg
    assert "other" not in reg
    assert len(reg) == 1


def test_names_keep_registration_order(registry):
    assert registry.names() == ["alpha", "alpine", "beta", "gamma_2", "delta"]
    assert list(registry) == registry.names()
    assert [name for name, _ in registry.items()] == registry.names()
    assert [entry for _, entry in registry.items()] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("*", ["alpha", "alpine", "beta", "gamma_2", "delta"]),
        ("alp*", ["alpha", "alpine"]),
        ("*a", ["alpha", "beta", "delta"]),
        ("?eta", ["beta"]),
        ("gamma_[0-9]", ["gamma_2"]),
        ("zeta*", []),
        ("ALPHA", []),  # case-sensitive
    ],
)
def test_names_pattern(registry, pattern, expected):
    assert registry.names(pattern) == expected


def test_duplicate_registration_is_an_error(registry):
    with pytest.raises(ValueError, match=r"widget 'beta' is already registered"):
        registry.register("beta", 99)
    assert registry.get("beta") == 2  # unchanged


def test_overwrite_replaces_entry_in_place(registry):
    registry.register("beta", 99, overwrite=True)
    assert registry.get("beta") == 99
    assert registry.names() == ["alpha", "alpine", "beta", "gamma_2", "delta"]


def test_unregister(registry):
    registry.unregister("beta")
    assert "beta" not in registry
    assert registry.names() == ["alpha", "alpine", "gamma_2", "delta"]
    with pytest.raises(ValueError, match="unknown widget 'beta'"):
        registry.get("beta")
    with pytest.raises(ValueError, match="unknown widget 'beta'"):
        registry.unregister("beta")
    registry.register("beta", 7)  # the name is free again
    assert registry.get("beta") == 7


@pytest.mark.parametrize("bad, closest", [("alpah", "alpha"), ("bta", "beta"), ("gamma2", "gamma_2"), ("delta_", "delta")])
def test_unknown_name_message_lists_choices_and_closest(registry, bad, closest):
    with pytest.raises(ValueError) as info:
        registry.get(bad)
    message = str(info.value)
    assert f"unknown widget {bad!r}" in message
    assert f"did you mean {closest!r}" in message
    for name in registry.names():
        assert name in message
    assert "choose from: alpha, alpine, beta, gamma_2, delta" in message


def test_unknown_name_far_from_everything_has_no_suggestion(registry):
    with pytest.raises(ValueError) as info:
        registry.get("zzzzzzzz")
    message = str(info.value)
    assert "'zzzzzzzz'" in message
    assert "did you mean" not in message
    assert "choose from: alpha, alpine, beta, gamma_2, delta" in message


def test_unknown_message_on_empty_registry():
    reg: Registry[int] = Registry("gizmo")
    with pytest.raises(ValueError, match=r"unknown gizmo 'x'") as info:
        reg.get("x")
    assert "did you mean" not in str(info.value)


def test_unknown_name_error_is_not_a_chained_keyerror(registry):
    # A typo is answered with a clean ValueError, not a KeyError traceback.
    with pytest.raises(ValueError) as info:
        registry.get("nope")
    assert not isinstance(info.value, KeyError)
    assert info.value.__suppress_context__


def test_closest_match():
    assert closest_match("adamw", ["adam", "adamw", "sgd"]) == "adamw"
    assert closest_match("adan", ["adam", "sgd"]) == "adam"
    assert closest_match("nrom", ["none", "norm", "value"]) == "norm"
    assert closest_match("qqqq", ["adam", "sgd"]) is None
    assert closest_match("adam", []) is None


@pytest.mark.parametrize("bad", ["", "Adam", "ADAM", "adam!", "ad-am", "ad am", "adam.w", "adam[lr=1]", "a/b", " adam"])
def test_invalid_names_rejected(bad):
    reg: Registry[int] = Registry("widget")
    with pytest.raises(ValueError, match=re.escape(f"invalid widget name {bad!r}")):
        reg.register(bad, 1)
    assert len(reg) == 0


@pytest.mark.parametrize("good", ["a", "adam", "adam_w", "x2", "sgd_momentum_0_9"])
def test_valid_names_accepted_and_parseable(good):
    reg: Registry[int] = Registry("widget")
    reg.register(good, 1)
    assert reg.get(good) == 1
    assert parse_spec(good) == (good, {})


@pytest.mark.parametrize("bad", ["1adam", "café", "_x"])
def test_registered_names_are_always_parseable_in_specs(bad):
    reg: Registry[int] = Registry("widget")
    try:
        reg.register(bad, 1)
    except ValueError:
        return  # rejected: consistent with the spec grammar
    # Accepted: then it must be usable on the command line / in suite files.
    assert parse_spec(bad) == (bad, {})


def test_builtin_registries_answer_typos():
    import gradbench

    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm' \(did you mean 'adam'\?\)"):
        gradbench.OPTIMIZERS.get("adamm")
    with pytest.raises(ValueError, match=r"unknown activation 'rleu' \(did you mean 'relu'\?\)"):
        gradbench.ACTIVATIONS.get("rleu")
    with pytest.raises(ValueError, match=r"unknown init 'lecun_normla' \(did you mean 'lecun_normal'\?\)"):
        gradbench.INITS.get("lecun_normla")


def test_a_name_left_out_on_purpose_is_answered_with_its_reason():
    registry = Registry("optimizer", left_out={"lomo": "takes the model, not parameters"})
    registry.register("sgd", object())
    with pytest.raises(ValueError, match=r"^optimizer 'lomo' is left out: it takes the model, not parameters; choose from: sgd$"):
        registry.get("lomo")


def test_a_typo_of_a_left_out_name_is_told_it_is_left_out():
    registry = Registry("optimizer", left_out={"lomo": "takes the model, not parameters"})
    registry.register("sgd", object())
    with pytest.raises(ValueError, match=r"^unknown optimizer 'lom' \(the closest, 'lomo', is left out: it takes the model, not parameters\); choose from: sgd$"):
        registry.get("lom")
