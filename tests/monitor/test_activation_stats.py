"""Activation statistics: exact on hand-built inputs, recorded only where they should be."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.monitor import ActivationSite, GradientMonitor
from gradbench.monitor.activation_stats import SATURATION_SLOPE, activation_kind

torch.set_num_threads(1)


class Through(nn.Module):
    """``activation(x * scale)`` with ``scale`` = 1: the activation sees ``x`` exactly, and the
    monitor has one parameter to watch."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x * self.scale)


def _record(activation: nn.Module, x: torch.Tensor):
    model = Through(activation)
    monitor = GradientMonitor(model, every=1, detail_every=1)
    model(x).sum().backward()
    monitor.step()
    return monitor.history()


# (activation, columns of a 4-example batch, expected stuck fraction). Each column is one unit.
CASES = [
    pytest.param(
        nn.ReLU(),
        [[-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [-5.0, 0.0, -5.0, 0.0]],
        3 / 5,  # units 0, 2 and 4 output exactly zero for every example
        id="relu",
    ),
    pytest.param(nn.LeakyReLU(), [[-1.0, -2.0, -3.0, -4.0], [0.0, 0.0, 0.0, 0.0]], 1 / 2, id="leaky_relu-only-zero-is-dead"),
    pytest.param(nn.GELU(), [[-50.0, -60.0, -70.0, -80.0], [-1.0, -1.0, -1.0, -1.0]], 1 / 2, id="gelu-underflows-to-zero"),
    pytest.param(
        nn.Sigmoid(),
        # slope 4 y (1 - y): x = +-5 gives 0.027 (saturated), x = 3 gives 0.18, x = 0 gives 1.
        [[5.0, 6.0, -5.0, 9.0], [5.0, 5.0, 5.0, 0.0], [3.0, 3.0, 3.0, 3.0], [-8.0, -8.0, 8.0, -8.0]],
        2 / 4,
        id="sigmoid",
    ),
    pytest.param(
        nn.Tanh(),
        # slope 1 - y^2: x = 3 gives 0.0099 (saturated), x = 1 gives 0.42.
        [[3.0, -3.0, 3.0, 4.0], [3.0, 3.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0]],
        1 / 3,
        id="tanh",
    ),
    pytest.param(nn.Softsign(), [[20.0, -30.0, 25.0, 40.0], [0.5, 20.0, 20.0, 20.0]], 1 / 2, id="softsign"),
    pytest.param(
        nn.Hardtanh(),
        # slope 0 at and beyond the bounds +-1, 1 strictly inside.
        [[1.0, -1.0, 2.0, -7.0], [1.0, 1.0, 0.999, 1.0], [0.0, 0.5, -0.5, 0.1]],
        1 / 3,
        id="hardtanh",
    ),
    pytest.param(nn.Hardsigmoid(), [[3.0, -3.0, 4.0, -9.0], [3.0, 2.9, 3.0, 3.0]], 1 / 2, id="hardsigmoid"),
    pytest.param(nn.ReLU6(), [[-1.0, -1.0, -1.0, -1.0], [7.0, 8.0, 9.0, 6.0], [1.0, 1.0, 1.0, 1.0]], 1 / 3, id="relu6-is-a-rectifier"),
]


@pytest.mark.parametrize("activation, columns, expected", CASES)
def test_stuck_fractions_are_exact_on_hand_built_inputs(activation, columns, expected):
    x = torch.tensor(columns).T.contiguous()  # [4 examples, units]
    history = _record(activation, x)
    (site,) = history.activation_sites
    kind = activation_kind(activation)
    assert site == ActivationSite("activation", type(activation).__name__, kind, x.shape[1])
    dead, saturated = history.dead_fraction[0][0], history.saturated_fraction[0][0]
    if kind == "rectifier":
        assert dead == expected and saturated is None
    else:
        assert saturated == expected and dead is None
    output = activation(x)
    assert history.activation_mean[0][0] == pytest.approx(output.double().mean().item(), rel=1e-6, abs=1e-9)
    assert history.activation_std[0][0] == pytest.approx(output.double().std(correction=0).item(), rel=1e-5, abs=1e-9)


def test_the_saturation_threshold_is_a_tenth_of_the_peak_slope():
    assert SATURATION_SLOPE == 0.1
    # Tanh: saturated exactly when 1 - y^2 < 0.1 on every example; y = tanh(x) on either side.
    inside, outside = math.atanh(math.sqrt(0.9)) - 1e-3, math.atanh(math.sqrt(0.9)) + 1e-3
    history = _record(nn.Tanh(), torch.tensor([[inside, outside], [inside, outside]]))
    assert history.saturated_fraction[0][0] == 1 / 2


def test_a_unit_of_a_convolution_is_one_channel_at_one_position():
    x = torch.rand(3, 2, 4, 5) + 0.1  # [batch, channels, height, width], all alive
    x[:, 0, 1, 2] = -1.0  # this position of channel 0 is dead for the whole batch
    x[1:, 0, 3, 3] = -1.0  # this one is alive for the first example
    x[:, 1] = -x[:, 1]  # all of channel 1 is dead
    history = _record(nn.ReLU(), x)
    assert history.activation_sites[0].units == 2 * 4 * 5
    assert history.dead_fraction[0][0] == (1 + 20) / 40


class Shared(nn.Module):
    """One ReLU module called twice, and a functional tanh the hooks cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(3, 3), nn.Linear(3, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return torch.tanh(self.second(self.relu(self.first(self.relu(x)))))


def test_a_module_called_twice_gives_two_sites():
    torch.manual_seed(0)
    model = Shared()
    monitor = GradientMonitor(model, every=1, detail_every=1)
    x = torch.tensor([[-1.0, 2.0, -3.0], [-1.0, 1.0, 3.0]])
    model(x).sum().backward()
    monitor.step()
    history = monitor.history()
    assert [site.name for site in history.activation_sites] == ["relu", "relu#2"]
    assert history.dead_fraction[0][0] == 1 / 3  # relu(x): unit 0 is negative in both examples
    hidden = torch.relu(model.first(torch.relu(x)))
    expected = (hidden == 0).all(0).double().mean().item()
    assert history.dead_fraction[0][1] == expected


def test_activations_are_recorded_only_at_detailed_steps_and_hooks_only_armed_for_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    monitor = GradientMonitor(model, every=2, detail_every=4)
    armed = []
    for step in range(1, 10):
        armed.append(bool(model[1]._forward_hooks))
        model(torch.randn(8, 4)).sum().backward()
        monitor.step()
    history = monitor.history()
    assert history.grad_steps == [1, 3, 5, 7, 9]
    assert history.activation_steps == [1, 5, 9]
    assert armed == [step in (1, 5, 9) for step in range(1, 10)]
    monitor.close()
    assert not model[1]._forward_hooks and not model._forward_pre_hooks


def test_forward_passes_without_gradients_are_ignored_and_the_last_one_with_gradients_counts():
    model = Through(nn.ReLU())
    monitor = GradientMonitor(model, every=1, detail_every=1)
    with torch.no_grad():
        model(torch.ones(2, 4))  # evaluation: not recorded
    model(torch.ones(2, 4))  # an earlier micro-batch, replaced by the next forward pass
    model(-torch.ones(2, 4)).sum().backward()
    monitor.step()
    assert monitor.history().dead_fraction == [[1.0]]


def test_a_forward_pass_with_other_sites_is_skipped_with_a_warning():
    model = Shared()
    monitor = GradientMonitor(model, every=1, detail_every=1)
    model(torch.randn(2, 3)).sum().backward()
    monitor.step()
    model.relu(model.first(torch.randn(2, 3))).sum().backward()  # one call of relu, not two
    with pytest.warns(UserWarning, match="another order or number"):
        monitor.step()
    assert monitor.history().activation_steps == [1]


def test_activations_off_registers_nothing():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    monitor = GradientMonitor(model, every=1, detail_every=1, activations=False)
    assert not model[1]._forward_hooks
    model(torch.randn(2, 4)).sum().backward()
    monitor.step()
    assert monitor.history().activation_sites == [] and monitor.activation_sites == []


def test_kinds():
    assert activation_kind(nn.ReLU()) == "rectifier" and activation_kind(nn.SiLU()) == "rectifier"
    assert activation_kind(nn.Sigmoid()) == "saturating" and activation_kind(nn.ReLU6()) == "rectifier"
    assert activation_kind(nn.Identity()) is None and activation_kind(nn.Linear(2, 2)) is None


class _DoubledInPlace(nn.Module):
    """Doubles its input in place: a later operation that changes an activation's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2.0)


def _site_reference(y: torch.Tensor, kind: str) -> tuple[float, float, float]:
    """(stuck fraction, mean, std) of one site's output, recomputed plainly in float64."""
    y = y.double()
    if kind == "relu":
        stuck = (y == 0).all(0).double().mean().item()
    elif kind == "sigmoid":
        stuck = ((4 * y * (1 - y)) < SATURATION_SLOPE).all(0).double().mean().item()
    else:  # tanh
        stuck = ((1 - y.square()) < SATURATION_SLOPE).all(0).double().mean().item()
    return stuck, y.mean().item(), y.std(correction=0).item()


@pytest.mark.parametrize("batched", [True, False], ids=["small-outputs-together", "each-as-it-comes"])
def test_sites_of_one_shape_measured_together_each_get_their_own_statistics(monkeypatch, batched):
    if not batched:  # every output measured as its hook runs: the same numbers
        monkeypatch.setattr("gradbench.monitor.activation_stats.BATCHED_ELEMENTS", 0)
    torch.manual_seed(0)
    kinds = ["sigmoid", "sigmoid", "tanh", "relu", "sigmoid"]
    modules = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
    layers: list[nn.Module] = []
    for kind in kinds:
        layers += [nn.Linear(5, 5), modules[kind]()]
    model = nn.Sequential(*layers)
    with torch.no_grad():  # spread the pre-activations so that some units saturate or die
        for layer in model[0::2]:
            layer.weight.mul_(4.0)
    outputs: list[torch.Tensor] = []
    for activation in model[1::2]:
        activation.register_forward_hook(lambda module, args, output: outputs.append(output.detach().clone()))
    monitor = GradientMonitor(model, every=1, detail_every=1)
    model(torch.randn(32, 5)).sum().backward()
    monitor.step()
    history = monitor.history()
    for site, (kind, output) in enumerate(zip(kinds, outputs)):
        stuck, mean, std = _site_reference(output, kind)
        recorded = history.dead_fraction[0][site] if kind == "relu" else history.saturated_fraction[0][site]
        assert recorded == stuck
        assert history.activation_mean[0][site] == pytest.approx(mean, rel=1e-6, abs=1e-9)
        assert history.activation_std[0][site] == pytest.approx(std, rel=1e-5, abs=1e-9)
    assert any(value > 0 for value in history.saturated_fraction[0] if value is not None)  # the test sees saturation


def test_an_output_changed_in_place_after_the_activation_keeps_the_statistics_of_its_hook():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Hardtanh(-0.5, 0.5), _DoubledInPlace(), nn.Linear(6, 2))
    x = torch.randn(16, 4)
    expected = torch.nn.functional.hardtanh(model[0](x), -0.5, 0.5).detach()
    monitor = GradientMonitor(model, every=1, detail_every=1)
    model(x).sum().backward()
    monitor.step()
    history = monitor.history()
    assert history.activation_mean[0][0] == pytest.approx(expected.double().mean().item(), rel=1e-6)
    assert history.pinned_fraction[0][0] == ((expected <= -0.4) | (expected >= 0.4)).double().mean().item()


def test_a_kept_output_changed_in_place_reads_as_nan_with_a_warning(monkeypatch):
    """The safety net: an output kept without a copy (as ReLU's, sigmoid's, tanh's are, whose
    backward would fail on such a change) that changed after its hook all the same."""
    monkeypatch.setattr("gradbench.monitor.activation_stats._BACKWARD_READS_OUTPUT", (nn.Hardtanh,))
    model = nn.Sequential(nn.Linear(4, 6), nn.Hardtanh(), _DoubledInPlace(), nn.Linear(6, 2))
    monitor = GradientMonitor(model, every=1, detail_every=1)
    model(torch.randn(16, 4)).sum().backward()
    with pytest.warns(UserWarning, match="changed in place"):
        monitor.step()
    history = monitor.history()
    for values in (history.saturated_fraction, history.pinned_fraction, history.activation_mean, history.activation_std):
        assert math.isnan(values[0][0])


def test_gradients_at_outputs_of_mixed_dtypes_are_measured_each_in_its_own():
    from gradbench.monitor.layer_norms import tensor_norm, tensor_norms

    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(5, generator=generator, dtype=dtype) for dtype in (torch.float64, torch.bfloat16, torch.float32, torch.float64)]
    assert [norm.item() for norm in tensor_norms(tensors)] == [tensor_norm(tensor).item() for tensor in tensors]
