"""Tests for gradbench.axes.inits: weight initialisers and their statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.axes import activation_gain
from gradbench.axes.inits import INITS, check_init_params, fans, initialise, list_inits, register_init
from gradbench.tasks.mlp import MLP

torch.set_num_threads(1)

RELU_GAIN = math.sqrt(2.0)
TANH_GAIN = 5.0 / 3.0


def _big_mlp(seed: int = 0) -> MLP:
    # Linear(384, 512), Linear(512, 512), Linear(512, 128): fan_in != fan_out on the outer layers
    # so that fan_in / fan_out / Xavier's average are told apart.
    torch.manual_seed(seed)
    return MLP(384, 128, depth=2, width=512, activation="relu")


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _assert_std(weight: torch.Tensor, expected: float, rel: float = 0.03) -> None:
    std = weight.double().std().item()
    assert std == pytest.approx(expected, rel=rel), f"std {std} != {expected}"
    assert abs(weight.double().mean().item()) < 0.05 * expected


def _assert_uniform(weight: torch.Tensor, bound: float) -> None:
    assert weight.abs().max().item() <= bound * (1 + 1e-6)
    # A large uniform sample gets close to its bound, and its variance is bound^2 / 3.
    assert weight.abs().max().item() >= 0.99 * bound
    _assert_std(weight, bound / math.sqrt(3.0))


def _check_orthogonal(weight: torch.Tensor, gain: float) -> None:
    w = weight.double()
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    eye = torch.eye(min(rows, cols), dtype=torch.float64)
    assert torch.allclose(gram, gain**2 * eye, atol=1e-5 * gain**2)


# name -> check(weight, activation gain); the checks use the definitions, not gradbench's code.
EXPECTED = {
    "xavier_uniform": lambda w, g: _assert_uniform(w, math.sqrt(6.0 / sum(fans(w)))),  # gain 1 always
    "xavier_normal": lambda w, g: _assert_std(w, math.sqrt(2.0 / sum(fans(w)))),
    "kaiming_uniform": lambda w, g: _assert_uniform(w, g * math.sqrt(3.0 / fans(w)[0])),
    "kaiming_normal": lambda w, g: _assert_std(w, g / math.sqrt(fans(w)[0])),
    "orthogonal": _check_orthogonal,
    "lecun_normal": lambda w, g: _assert_std(w, 1.0 / math.sqrt(fans(w)[0])),  # gain 1 always
    "standard": lambda w, g: _assert_uniform(w, 1.0 / math.sqrt(fans(w)[0])),
    "normal": lambda w, g: _assert_std(w, 0.01),  # a fixed scale, whatever the layer and activation
    "uniform": lambda w, g: _assert_uniform(w, 0.05),
    # N(0, s^2) cut at +-2s has standard deviation s * sqrt(1 - 2 * 2 phi(2) / (2 Phi(2) - 1)) = 0.8796 s.
    "truncated_normal": lambda w, g: (_assert_std(w, 0.01 * 0.87962566), _assert_bounded(w, 0.02)),
}


def _assert_bounded(weight: torch.Tensor, bound: float) -> None:
    assert weight.abs().max().item() <= bound * (1 + 1e-6)


@pytest.mark.parametrize("name", list_inits())
@pytest.mark.parametrize("gain", [RELU_GAIN, TANH_GAIN], ids=["relu_gain", "tanh_gain"])
def test_init_weight_statistics(name, gain):
    model = _big_mlp()
    if name == "default":
        reference = _big_mlp()
        initialise(model, name, gain)
        for (key, value), (_, expected) in zip(model.state_dict().items(), reference.state_dict().items()):
            assert torch.equal(value, expected), key
        return
    if name not in EXPECTED:
        pytest.fail(f"no expected statistics for initialiser {name!r}: add it to EXPECTED")
    initialise(model, name, gain)
    for linear in _linears(model):
        EXPECTED[name](linear.weight.detach(), gain)


def test_standard_init_variance_on_large_layer():
    torch.manual_seed(3)
    layer = nn.Sequential(nn.Linear(1000, 1000))
    initialise(layer, "standard", RELU_GAIN)
    w = layer[0].weight.detach().double()
    assert w.abs().max() <= 1 / math.sqrt(1000)
    assert w.var().item() == pytest.approx(1 / (3 * 1000), rel=0.01)


def test_xavier_uniform_gain_param_and_ignores_activation_gain():
    model = _big_mlp()
    initialise(model, "xavier_uniform", gain=5.0)  # activation gain is ignored by Xavier
    for linear in _linears(model):
        _assert_uniform(linear.weight.detach(), math.sqrt(6.0 / sum(fans(linear.weight))))
    initialise(model, "xavier_uniform", gain=5.0, params={"gain": 2.0})
    for linear in _linears(model):
        _assert_uniform(linear.weight.detach(), 2.0 * math.sqrt(6.0 / sum(fans(linear.weight))))


def test_kaiming_params_override_gain_and_mode():
    model = _big_mlp()
    initialise(model, "kaiming_normal", RELU_GAIN, params={"mode": "fan_out"})
    for linear in _linears(model):
        _assert_std(linear.weight.detach(), RELU_GAIN / math.sqrt(linear.out_features))
    initialise(model, "kaiming_uniform", RELU_GAIN, params={"gain": 3.0, "mode": "fan_out"})
    for linear in _linears(model):
        _assert_uniform(linear.weight.detach(), 3.0 * math.sqrt(3.0 / linear.out_features))
    initialise(model, "orthogonal", RELU_GAIN, params={"gain": 0.5})
    for linear in _linears(model):
        _check_orthogonal(linear.weight.detach(), 0.5)


def test_orthogonal_square_layer_identity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    initialise(model, "orthogonal", TANH_GAIN)
    w = model[0].weight.detach().double()
    assert torch.allclose(w @ w.T, TANH_GAIN**2 * torch.eye(64, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(w.T @ w, TANH_GAIN**2 * torch.eye(64, dtype=torch.float64), atol=1e-5)


def test_kaiming_on_convolution_uses_receptive_field():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 5))
    assert fans(model[0].weight) == (16 * 25, 64 * 25)
    initialise(model, "kaiming_normal", RELU_GAIN)
    _assert_std(model[0].weight.detach(), RELU_GAIN / math.sqrt(16 * 25))
    assert torch.count_nonzero(model[0].bias) == 0


def test_fans():
    assert fans(torch.empty(3, 5)) == (5, 3)
    assert fans(torch.empty(8, 4, 3, 3)) == (36, 72)
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        fans(torch.empty(7))


@pytest.mark.parametrize("name", list_inits())
def test_biases_zeroed_except_default(name):
    torch.manual_seed(0)
    model = MLP(10, 3, depth=3, width=16, activation="tanh")
    biases_before = [linear.bias.detach().clone() for linear in _linears(model)]
    assert all(torch.count_nonzero(b) > 0 for b in biases_before)
    initialise(model, name, TANH_GAIN)
    for linear, before in zip(_linears(model), biases_before):
        if name == "default":
            assert torch.equal(linear.bias, before)
        else:
            assert torch.count_nonzero(linear.bias) == 0


def _model_with_norms() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(),
        nn.Linear(16, 16), nn.GroupNorm(4, 16),
        nn.Linear(16, 4),
    )
    with torch.no_grad():
        for module in model:
            if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)):
                module.bias.fill_(0.25)  # non-zero so that zeroing would show
    return model


@pytest.mark.parametrize("name", list_inits())
def test_normalisation_layers_keep_scales_and_shifts(name):
    model = _model_with_norms()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    initialise(model, name, RELU_GAIN)
    for module in model:
        if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)):
            assert torch.equal(module.weight, torch.ones(16))
            assert torch.equal(module.bias, torch.full((16,), 0.25))
    # Buffers (running statistics) are untouched.
    assert torch.equal(model[1].running_mean, before["1.running_mean"])
    assert torch.equal(model[1].running_var, before["1.running_var"])
    linears = _linears(model)
    if name != "default":
        assert not any(torch.equal(lin.weight, before[f"{i}.weight"]) for i, lin in zip((0, 3, 6, 8), linears))


@pytest.mark.parametrize("name", list_inits())
def test_init_is_deterministic_given_seed(name):
    models = []
    for _ in range(2):
        torch.manual_seed(42)
        model = MLP(12, 4, depth=2, width=8, activation="relu")
        initialise(model, name, RELU_GAIN)
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
        assert torch.isfinite(a).all()


# --------------------------------------------------------------------------- SELU self-normalisation


def _last_hidden_stats(init: str, gain: float, params: dict | None = None, seed: int = 0) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = MLP(256, 10, depth=32, width=256, activation="selu")
    initialise(model, init, gain, params)
    x = torch.randn(2048, 256)
    with torch.no_grad():
        hidden = model.layers[:-1](x)  # up to and including the last SELU
    return hidden.mean().item(), hidden.var().item()


@pytest.mark.parametrize("init", ["lecun_normal", "kaiming_normal"])
def test_selu_self_normalises_with_gain_one(init):
    gain = activation_gain("selu")
    assert gain == 1.0
    mean, var = _last_hidden_stats(init, gain)
    assert abs(mean) < 0.1
    assert abs(var - 1.0) < 0.25


def test_selu_with_torch_gain_three_quarters_collapses():
    torch_gain = nn.init.calculate_gain("selu")
    assert torch_gain == pytest.approx(0.75)
    _, var = _last_hidden_stats("kaiming_normal", torch_gain)
    assert var < 0.5
    # Same with the gain given as an init parameter.
    _, var_param = _last_hidden_stats("kaiming_normal", 1.0, {"gain": torch_gain})
    assert var_param < 0.5


def test_lecun_normal_ignores_activation_gain():
    a = _big_mlp()
    b = _big_mlp()
    torch.manual_seed(1)
    initialise(a, "lecun_normal", RELU_GAIN)
    torch.manual_seed(1)
    initialise(b, "lecun_normal", TANH_GAIN)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


# --------------------------------------------------------------------------- bad params

INIT_ERRORS = [
    ("xavier_uniform", {"mode": "fan_in"}, r"init 'xavier_uniform' has no parameter 'mode'; valid: gain, scope"),
    ("lecun_normal", {"gain": 2.0}, r"init 'lecun_normal' has no parameter 'gain'; valid: scope"),
    ("normal", {"std": 0}, r"invalid init std=0 for 'normal': must be a positive number"),
    ("uniform", {"a": -1.0}, r"invalid init a=-1.0 for 'uniform'"),
    ("truncated_normal", {"std": math.inf}, r"invalid init std=inf"),
    ("orthogonal", {"scope": "input"}, r"invalid init scope='input' for 'orthogonal'; choose from: all, hidden, output, recurrent"),
    ("standard", {"scale": 1}, r"init 'standard' has no parameter 'scale'"),
    ("default", {"gain": 1.0}, r"init 'default' has no parameter 'gain'"),
    ("kaiming_normal", {"gain": 0}, r"invalid init gain=0 for 'kaiming_normal'"),
    ("kaiming_uniform", {"gain": -1.0}, r"invalid init gain=-1.0"),
    ("orthogonal", {"gain": 0.0}, r"invalid init gain=0.0 for 'orthogonal'"),
    ("xavier_normal", {"gain": -0.5}, r"invalid init gain=-0.5"),
    ("xavier_uniform", {"gain": "big"}, r"invalid init gain='big'"),
    ("kaiming_normal", {"gain": math.nan}, r"invalid init gain=nan"),
    ("kaiming_uniform", {"mode": "fan_avg"}, r"invalid init mode='fan_avg' for 'kaiming_uniform'; choose from: fan_in, fan_out"),
    ("kaiming_normal", {"mode": None}, r"invalid init mode=None"),
    ("xavier", {}, r"unknown init 'xavier' \(did you mean 'xavier_normal'|unknown init 'xavier' \(did you mean 'xavier_uniform'"),
    ("kaimig_normal", {}, r"unknown init 'kaimig_normal' \(did you mean 'kaiming_normal'\?\)"),
]


@pytest.mark.parametrize("name, params, pattern", INIT_ERRORS)
def test_bad_init_params(name, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_init_params(name, params)
    model = _model_with_norms()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(ValueError, match=pattern):
        initialise(model, name, RELU_GAIN, params)
    # Nothing was modified before the error.
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_infinite_gain_rejected():
    with pytest.raises(ValueError, match="invalid init gain"):
        check_init_params("kaiming_normal", {"gain": math.inf})


def test_check_init_params_fills_defaults():
    assert check_init_params("kaiming_normal", None) == {"gain": None, "mode": "fan_in", "scope": "all"}
    assert check_init_params("kaiming_normal", {"mode": "fan_out"}) == {"gain": None, "mode": "fan_out", "scope": "all"}
    assert check_init_params("xavier_uniform", {"gain": 2}) == {"gain": 2, "scope": "all"}
    assert check_init_params("lecun_normal", {}) == {"scope": "all"}
    assert check_init_params("default", {}) == {}  # it sets nothing, so it has no scope


def test_register_custom_init():
    name = "test_constant"

    def constant(weight, gain, params):
        weight.fill_(params["value"] * gain)

    try:
        register_init(name, constant, params={"value": 0.5}, description="constant")
        assert name in list_inits()
        model = MLP(4, 2, depth=1, width=3, activation="relu")
        initialise(model, name, 2.0, {"value": 0.25})
        for linear in _linears(model):
            assert torch.equal(linear.weight, torch.full_like(linear.weight, 0.5))
            assert torch.count_nonzero(linear.bias) == 0
    finally:
        INITS.unregister(name)


# --------------------------------------------------------------------------- scope


def _changed(model: nn.Module, init: str, params: dict) -> dict[str, bool]:
    torch.manual_seed(0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    initialise(model, init, 1.0, params)
    return {name: not torch.equal(before[name], p) for name, p in model.named_parameters()}


def test_scope_hidden_leaves_the_output_layer_as_the_model_made_it():
    torch.manual_seed(1)
    mlp = MLP(6, 3, depth=2, width=5, activation="tanh")
    for linear in _linears(mlp):  # biases that are not zero, to see which ones are zeroed
        nn.init.constant_(linear.bias, 0.5)
    changed = _changed(mlp, "normal", {"std": 1.0, "scope": "hidden"})
    assert changed == {"layers.0.weight": True, "layers.0.bias": True, "layers.2.weight": True, "layers.2.bias": True, "layers.4.weight": False, "layers.4.bias": False}
    changed = _changed(mlp, "normal", {"std": 1.0, "scope": "output"})
    assert changed == {"layers.0.weight": False, "layers.0.bias": False, "layers.2.weight": False, "layers.2.bias": False, "layers.4.weight": True, "layers.4.bias": True}


def test_scope_recurrent_sets_only_the_hidden_to_hidden_matrices():
    """The classic RNN init: an orthogonal recurrent matrix, input weights left alone."""
    from gradbench.tasks.rnn import RecurrentNet

    torch.manual_seed(2)
    net = RecurrentNet("rnn", 3, 2, depth=2, width=8)
    changed = _changed(net, "orthogonal", {"scope": "recurrent"})
    assert {name for name, moved in changed.items() if moved} == {"layers.0.weight_hh_l0", "layers.0.bias_hh_l0", "layers.1.weight_hh_l0", "layers.1.bias_hh_l0"}
    for layer in net.layers:
        _check_orthogonal(layer.weight_hh_l0.detach(), 1.0)
        assert torch.count_nonzero(layer.bias_hh_l0) == 0


def test_scope_all_is_the_default_and_leaves_keys_unchanged():
    from gradbench.grid import expand, parse_suite

    (plain,) = expand(parse_suite('tasks = ["linreg"]\ninits = ["orthogonal"]'))
    (spelled,) = expand(parse_suite('tasks = ["linreg"]\ninits = ["orthogonal[scope=all]"]'))
    (hidden,) = expand(parse_suite('tasks = ["mnist1d_mlp"]\ninits = ["orthogonal[scope=hidden]"]'))
    assert plain.key == spelled.key and plain.init == "orthogonal"
    assert hidden.init == "orthogonal[scope=hidden]"
