"""Tests for gradbench.axes.activations: the activation registry and initialisation gains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.axes import ACTIVATIONS, activation_gain, build_activation, list_activations, register_activation

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list_activations())
def test_activation_builds_fresh_module(name):
    first = build_activation(name)
    second = build_activation(name)
    assert isinstance(first, nn.Module)
    assert isinstance(first, ACTIVATIONS.get(name).module_class)
    assert first is not second
    assert list(first.parameters()) == []  # MLP relies on activations owning no parameters


@pytest.mark.parametrize("name", list_activations())
def test_activation_is_not_inplace(name):
    module = build_activation(name)
    assert getattr(module, "inplace", False) is False
    x = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    original = x.clone()
    module(x)
    assert torch.equal(x, original), f"{name} modified its input"


@pytest.mark.parametrize("name", list_activations())
def test_forward_backward_finite_grads(name):
    generator = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(32, 5, 3, generator=generator)).requires_grad_()
    y = build_activation(name)(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    weights = torch.randn(y.shape, generator=generator)
    (y * weights).sum().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    # Not a constant function: some gradient flows.
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_activations())
def test_gain_is_positive_finite_and_kind_valid(name):
    gain = activation_gain(name)
    assert isinstance(gain, float)
    assert math.isfinite(gain) and gain > 0
    spec = ACTIVATIONS.get(name)
    assert spec.kind in ("saturating", "rectifier", "linear")
    assert spec.description


@pytest.mark.parametrize(
    "name, expected",
    [
        ("relu", math.sqrt(2.0)),
        ("tanh", 5.0 / 3.0),
        ("sigmoid", 1.0),
        ("selu", 1.0),
        ("identity", 1.0),
        ("leaky_relu", math.sqrt(2.0 / (1 + 0.01**2))),
    ],
)
def test_known_gains(name, expected):
    assert activation_gain(name) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "name, torch_name",
    [("relu", "relu"), ("tanh", "tanh"), ("sigmoid", "sigmoid"), ("identity", "linear"), ("leaky_relu", "leaky_relu")],
)
def test_gains_match_torch_where_torch_is_right(name, torch_name):
    assert activation_gain(name) == pytest.approx(nn.init.calculate_gain(torch_name), rel=1e-12)


def test_selu_gain_is_one_not_torch_three_quarters():
    assert activation_gain("selu") == 1.0
    torch_gain = nn.init.calculate_gain("selu")
    assert torch_gain == pytest.approx(0.75)
    assert activation_gain("selu") != torch_gain


def test_leaky_relu_default_matches_torch():
    assert activation_gain("leaky_relu") == pytest.approx(nn.init.calculate_gain("leaky_relu", 0.01), rel=1e-12)
    assert activation_gain("leaky_relu") != activation_gain("relu")


@pytest.mark.parametrize("slope", [0.0, 0.1, 0.2, 0.5, 1.0])
def test_leaky_relu_gain_follows_negative_slope(slope):
    gain = activation_gain("leaky_relu", {"negative_slope": slope})
    assert gain == pytest.approx(nn.init.calculate_gain("leaky_relu", slope), rel=1e-12)
    module = build_activation("leaky_relu", {"negative_slope": slope})
    assert module.negative_slope == slope


def test_leaky_relu_gain_changes_with_slope():
    gains = [activation_gain("leaky_relu", {"negative_slope": s}) for s in (0.0, 0.1, 0.5, 1.0)]
    assert gains == sorted(gains, reverse=True)
    assert len(set(gains)) == 4
    assert gains[0] == pytest.approx(math.sqrt(2.0))
    assert gains[-1] == pytest.approx(1.0)  # slope 1: the identity


def test_params_reach_the_module():
    elu = build_activation("elu", {"alpha": 0.5})
    x = torch.tensor([-100.0, 1.0])
    assert torch.allclose(elu(x), torch.tensor([-0.5, 1.0]))


def test_inplace_activation_rejected():
    with pytest.raises(ValueError, match=r"activation 'relu' must not be in-place"):
        build_activation("relu", {"inplace": True})


def test_unknown_params_rejected():
    with pytest.raises(ValueError, match=r"invalid parameters \{'slope': 0.1\} for activation 'leaky_relu'"):
        build_activation("leaky_relu", {"slope": 0.1})


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu' \(did you mean 'relu'\?\)"):
        build_activation("rleu")
    with pytest.raises(ValueError, match=r"unknown activation 'tahn'"):
        activation_gain("tahn")


def test_register_custom_activation():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    name = "test_square"
    try:
        spec = register_activation(name, Square, gain=0.5, kind="linear", description="x^2")
        assert name in list_activations()
        assert activation_gain(name) == 0.5
        assert isinstance(build_activation(name), Square)
        assert spec.kind == "linear"
        with pytest.raises(ValueError, match="already registered"):
            register_activation(name, Square, gain=1.0, kind="linear", description="again")
    finally:
        ACTIVATIONS.unregister(name)
    assert name not in list_activations()


def test_register_activation_callable_gain():
    name = "test_param_gain"
    try:
        register_activation(name, nn.LeakyReLU, gain=lambda negative_slope=0.01, **_: 1 + negative_slope, kind="rectifier", description="d")
        assert activation_gain(name) == pytest.approx(1.01)
        assert activation_gain(name, {"negative_slope": 0.5}) == pytest.approx(1.5)
    finally:
        ACTIVATIONS.unregister(name)


def test_register_activation_bad_kind():
    with pytest.raises(ValueError, match=r"invalid activation kind 'smooth'"):
        register_activation("test_bad_kind", nn.ReLU, gain=1.0, kind="smooth", description="d")
    assert "test_bad_kind" not in ACTIVATIONS


def test_builtin_activation_names():
    assert {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus", "hardtanh", "identity"} <= set(list_activations())
    assert list_activations("s*") == ["sigmoid", "selu", "silu", "softplus"]
