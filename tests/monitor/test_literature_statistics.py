"""The statistics of the vanishing-gradient literature against independent autograd computations:
the back-propagated gradient at each layer's output and pre-activation (Glorot & Bengio), the
weight and bias gradients apart (He et al. compare weight gradients), and the fraction of a
saturating layer's outputs pinned near a bound (Glorot & Bengio's Figure 2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.monitor import GradientMonitor

torch.set_num_threads(1)


def _model(bias_last: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3, bias=bias_last))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return 3 * torch.randn(32, 6, generator=generator), torch.randint(0, 3, (32,), generator=generator)


def _reference(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Every intermediate tensor kept, its gradient read after one backward pass."""
    outputs = []
    h = x
    for module in model:
        h = module(h)
        h.retain_grad()
        outputs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    activations = [i for i, m in enumerate(model) if not isinstance(m, nn.Linear)]
    pinned = []
    for i in activations:
        a = outputs[i].detach()
        near = (a < 0.1) | (a > 0.9) if isinstance(model[i], nn.Sigmoid) else a.abs() > 0.8
        pinned.append(float(near.float().mean()))
    return {
        "pre_activation": [float(outputs[i].grad.norm()) for i in linears],
        "layer_output": [float(outputs[i].grad.norm()) for i in activations],
        "weight_grad": [float(model[i].weight.grad.norm()) for i in linears],
        "bias_grad": [float(model[i].bias.grad.norm()) if model[i].bias is not None else None for i in linears],
        "pinned": pinned,
    }


def _monitored(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int = 1):
    monitor = GradientMonitor(model, every=1, detail_every=1)
    for _ in range(steps):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(loss)
    return monitor.history()


@pytest.mark.parametrize("bias_last", [True, False])
def test_back_propagated_gradients_and_weight_and_bias_parts_equal_autograds(bias_last):
    x, y = _batch()
    reference = _reference(_model(bias_last), x, y)
    history = _monitored(_model(bias_last), x, y)
    (outputs,) = history.layer_output_grad_norms
    assert outputs == pytest.approx(reference["pre_activation"], rel=1e-6)  # a Linear's output is its pre-activation
    (sites,) = history.activation_output_grad_norms
    assert sites == pytest.approx(reference["layer_output"], rel=1e-6)
    (weights,), (biases,) = history.layer_weight_grad_norms, history.layer_bias_grad_norms
    assert weights == pytest.approx(reference["weight_grad"], rel=1e-6)
    assert biases[:2] == pytest.approx(reference["bias_grad"][:2], rel=1e-6)
    assert biases[2] == (pytest.approx(reference["bias_grad"][2], rel=1e-6) if bias_last else None)  # no bias: None, not 0
    for total, weight, bias in zip(history.layer_grad_norms[0], weights, biases):
        assert total == pytest.approx(math.sqrt(weight**2 + (bias or 0.0) ** 2), rel=1e-6)  # the total stays


def test_pinned_fraction_counts_outputs_near_a_bound_over_every_example_and_unit():
    x, y = _batch()
    reference = _reference(_model(), x, y)
    history = _monitored(_model(), x, y)
    (pinned,) = history.pinned_fraction
    assert pinned == pytest.approx(reference["pinned"], abs=1e-12)
    assert 0 < pinned[0] < 1  # inputs of std 3 push some sigmoid outputs to the ends


def test_a_top_sigmoid_layer_sitting_near_zero_is_pinned_though_no_unit_saturates_for_every_example():
    """Glorot & Bengio's Figure 2: outputs around 0.03 (slope 0.12 of the peak, above the 0.1
    that counts a unit as saturated), so the saturated fraction is 0 and the pinned one is 1."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(math.log(0.03 / 0.97))  # every output exactly 0.03
    history = _monitored(model, torch.randn(16, 4), torch.randint(0, 2, (16,)))
    assert history.saturated_fraction == [[0.0]] and history.pinned_fraction == [[pytest.approx(1.0)]]


def test_a_layer_called_twice_adds_both_calls_gradients():
    torch.manual_seed(0)
    shared = nn.Linear(5, 5)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = shared
            self.head = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))

    import copy

    x, y = torch.randn(8, 5), torch.randint(0, 2, (8,))
    model = Twice()
    reference = copy.deepcopy(model)
    first = reference.shared(x)
    first.retain_grad()
    second = reference.shared(torch.tanh(first))
    second.retain_grad()
    nn.functional.cross_entropy(reference.head(torch.tanh(second)), y).backward()
    expected = math.sqrt(float(first.grad.square().sum() + second.grad.square().sum()))
    history = _monitored(model, x, y)
    assert history.layer_names == ["shared", "head"]
    assert history.layer_output_grad_norms[0][0] == pytest.approx(expected, rel=1e-6)


def test_back_propagated_gradients_only_at_detailed_steps_and_no_hooks_in_between():
    x, y = _batch()
    model = _model()
    monitor = GradientMonitor(model, every=1, detail_every=3)
    for _ in range(4):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(loss)
        assert all(not m._forward_hooks for m in model) or monitor.steps % 3 == 0  # armed only before a detailed step
    history = monitor.history()
    assert [row is not None for row in history.layer_output_grad_norms] == [True, False, False, True]
    assert len(history.activation_output_grad_norms) == 2  # steps 1 and 4


def test_a_closure_optimizers_back_propagated_gradients_are_those_of_its_first_evaluation():
    """L-BFGS evaluates the loss several times a step; the monitor records the first evaluation,
    and the later ones must not add to the next detailed step's sums (they did: 2.3x)."""
    from gradbench.run.train import closure_step

    x, y = _batch()
    model = _model()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    monitor = GradientMonitor(model, every=1, detail_every=2)
    expected = {}
    for step in range(1, 6):
        import copy

        expected[step] = _reference(copy.deepcopy(model), x, y)["pre_activation"]
        closure_step(model, nn.functional.cross_entropy, optimizer, monitor, x, y)
    history = monitor.history()
    recorded = {step: row for step, row in zip(history.grad_steps, history.layer_output_grad_norms) if row is not None}
    assert sorted(recorded) == [1, 3, 5]
    for step, row in recorded.items():
        assert row == pytest.approx(expected[step], rel=1e-5), step


def test_relu6_is_a_rectifier_with_no_pinned_fraction():
    """ReLU6 subclasses Hardtanh in torch; its outputs at 0 and 6 are not a saturation."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU6(), nn.Linear(8, 2))
    history = _monitored(model, 10 * torch.randn(32, 4), torch.randint(0, 2, (32,)))
    assert history.activation_sites[0].kind == "rectifier" and history.pinned_fraction == [[None]]
