"""Tests for gradbench.monitor.gradient_monitor.GradientMonitor."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.axes import Clipping
from gradbench.monitor.gradient_monitor import GradientMonitor, MonitorHistory, NonFinite, model_layers
from gradbench.tasks.mlp import MLP

torch.set_num_threads(1)


def _mlp(seed: int = 0, depth: int = 2) -> MLP:
    torch.manual_seed(seed)
    return MLP(6, 3, depth=depth, width=8, activation="tanh")


def _batch(seed: int = 0, n: int = 16):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def _backward(model: nn.Module, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    x, y = _batch(seed)
    model.zero_grad(set_to_none=True)
    loss = scale * nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


def _layer_norms_reference(model: nn.Module) -> dict[str, float]:
    """sqrt(sum ||p.grad||^2) over each module's own parameters (None grads count 0)."""
    norms = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            squares = sum(
                torch.linalg.vector_norm(p.grad).double() ** 2 for p in own if p.grad is not None
            )
            norms[name or type(module).__name__] = math.sqrt(float(squares))
    return norms


# --------------------------------------------------------------------------- layers and norms


def test_layer_names_one_per_linear():
    model = _mlp(depth=3)
    monitor = GradientMonitor(model, every=1)
    assert monitor.layer_names == ["layers.0", "layers.2", "layers.4", "layers.6"]
    assert monitor.num_layers == 4
    assert [name for name, _ in model_layers(model)] == monitor.layer_names
    assert all(len(params) == 2 for _, params in model_layers(model))  # weight and bias together


@pytest.mark.parametrize("seed", range(4))
def test_per_layer_and_global_norms(seed):
    model = _mlp(seed)
    monitor = GradientMonitor(model, every=1)
    _backward(model, seed)
    reference = _layer_norms_reference(model)
    grads_before = [p.grad.clone() for p in model.parameters()]
    monitor.step()
    history = monitor.history()
    assert history.layer_names == ["layers.0", "layers.2", "layers.4"]
    assert history.grad_steps == [1]
    (row,) = history.layer_grad_norms
    expected = [reference[name] for name in history.layer_names]
    assert row == pytest.approx(expected, rel=1e-5)
    total = math.sqrt(sum(n * n for n in row))
    assert history.total_norm_before[0] == pytest.approx(total, rel=1e-5)
    # Same global norm as torch computes for clip_grad_norm_.
    all_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads_before])).item()
    assert history.total_norm_before[0] == pytest.approx(all_norm, rel=1e-5)
    # No clipping: after == before, and the grads are untouched.
    assert history.total_norm_after == history.total_norm_before
    for p, g in zip(model.parameters(), grads_before):
        assert torch.equal(p.grad, g)


@pytest.mark.parametrize("relative", [0.1, 0.5, 0.9, 1.5, 10.0])
def test_norm_clipping_records_min_and_clips(relative):
    model = _mlp(1)
    _backward(model, 1)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])).item()
    threshold = relative * norm
    reference = _mlp(1)
    _backward(reference, 1)
    torch_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), threshold)

    monitor = GradientMonitor(model, every=1, clip=f"norm:{threshold!r}")
    assert monitor.clipping == Clipping("norm", threshold)
    monitor.step()
    history = monitor.history()
    assert history.total_norm_before[0] == pytest.approx(torch_norm.item(), rel=1e-5)
    assert history.total_norm_after[0] == pytest.approx(min(norm, threshold), rel=1e-5)
    # The grads were actually clipped, exactly as torch clips them.
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-5, atol=1e-9)
    actual = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])).item()
    assert actual <= threshold * (1 + 1e-5)
    assert actual == pytest.approx(history.total_norm_after[0], rel=1e-5)
    # Layer norms are recorded before clipping.
    assert math.sqrt(sum(n * n for n in history.layer_grad_norms[0])) == pytest.approx(norm, rel=1e-5)


def test_value_clipping_in_monitor():
    model = _mlp(2)
    _backward(model, 2, scale=10.0)
    reference = _mlp(2)
    _backward(reference, 2, scale=10.0)
    torch.nn.utils.clip_grad_value_(reference.parameters(), 0.05)
    monitor = GradientMonitor(model, every=1, clip="value:0.05")
    monitor.step()
    history = monitor.history()
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.equal(mine.grad, theirs.grad)
        assert mine.grad.abs().max().item() <= 0.05 + 1e-9
    recomputed = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])).item()
    assert history.total_norm_after[0] == pytest.approx(recomputed, rel=1e-5)
    assert history.total_norm_after[0] < history.total_norm_before[0]


def test_clipping_applies_on_steps_not_recorded():
    model = _mlp(3)
    monitor = GradientMonitor(model, clip="norm:1e-3", every=0)
    for step in range(3):
        _backward(model, step)
        monitor.step()
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])).item()
        assert norm <= 1e-3 * (1 + 1e-5)
    history = monitor.history()
    assert history.grad_steps == [] and history.layer_grad_norms == []


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.norm = nn.LayerNorm(5)

    def forward(self, x):
        return self.norm(self.fc(x))


class _Net(nn.Module):
    """Not a Sequential: own parameter, nested blocks, a ModuleDict, a frozen and an unused layer."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.encoder = _Block()
        self.heads = nn.ModuleDict({"a": nn.Linear(5, 3), "b": nn.Linear(5, 3, bias=False)})
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.relu(self.encoder(x)) * self.scale
        return self.frozen(self.heads["a"](h) + self.heads["b"](h))


def test_custom_module_with_nested_and_unused_layers():
    torch.manual_seed(0)
    model = _Net()
    monitor = GradientMonitor(model, every=1, buffer_steps=4)
    assert monitor.layer_names == ["_Net", "encoder.fc", "encoder.norm", "heads.a", "heads.b", "unused"]
    for step in range(3):
        _backward(model, step)
        assert model.unused.weight.grad is None
        reference = _layer_norms_reference(model)
        monitor.step()
        history = monitor.history()
        row = history.layer_grad_norms[-1]
        assert row == pytest.approx([reference[name] for name in monitor.layer_names], rel=1e-5)
        assert row[monitor.layer_names.index("unused")] == 0.0
        assert history.total_norm_before[-1] == pytest.approx(math.sqrt(sum(n * n for n in row)), rel=1e-5)
    assert history.nonfinite is None
    # Later the unused layer gets a gradient too: a different set of present grads.
    _backward(model, 5)
    model.unused.weight.grad = torch.full((4, 4), 0.5)
    reference = _layer_norms_reference(model)
    monitor.step()
    row = monitor.history().layer_grad_norms[-1]
    assert row[-1] == pytest.approx(2.0)  # ||0.5 * ones(4, 4)|| = 2
    assert row == pytest.approx([reference[name] for name in monitor.layer_names], rel=1e-5)


def test_partially_missing_grads_within_a_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    monitor = GradientMonitor(model, every=1)
    assert monitor.layer_names == ["0", "1"]
    model[0].weight.grad = torch.full((4, 3), 1.0)  # norm sqrt(12); bias grad None
    model[1].bias.grad = torch.tensor([3.0, 4.0])  # norm 5; weight grad None
    monitor.step()
    history = monitor.history()
    assert history.layer_grad_norms[0] == pytest.approx([math.sqrt(12.0), 5.0])
    assert history.total_norm_before[0] == pytest.approx(math.sqrt(37.0))


# --------------------------------------------------------------------------- steps and buffering


def test_every_three_records_steps_1_4_7_and_loss_every_step():
    model = _mlp()
    monitor = GradientMonitor(model, every=3)
    losses = []
    for step in range(8):
        loss = _backward(model, step)
        losses.append(loss.item())
        monitor.step(loss)
    history = monitor.history()
    assert history.grad_steps == [1, 4, 7]
    assert len(history.layer_grad_norms) == len(history.total_norm_before) == len(history.total_norm_after) == 3
    assert history.loss_steps == list(range(1, 9))
    assert history.losses == pytest.approx(losses, rel=1e-6)
    assert monitor.steps == 8


@pytest.mark.parametrize("every, expected", [(1, [1, 2, 3, 4, 5, 6, 7]), (2, [1, 3, 5, 7]), (5, [1, 6]), (10, [1]), (0, [])])
def test_every_schedule(every, expected):
    model = _mlp()
    monitor = GradientMonitor(model, every=every, buffer_steps=3)
    for step in range(7):
        monitor.step(_backward(model, step))
    history = monitor.history()
    assert history.grad_steps == expected
    assert history.loss_steps == list(range(1, 8))


def test_loss_optional():
    model = _mlp()
    monitor = GradientMonitor(model, every=1)
    for step in range(4):
        loss = _backward(model, step)
        monitor.step(loss if step % 2 == 0 else None)
    history = monitor.history()
    assert history.loss_steps == [1, 3]
    assert history.grad_steps == [1, 2, 3, 4]


def test_history_empty_until_flush():
    model = _mlp()
    monitor = GradientMonitor(model, every=1, buffer_steps=10)
    history = monitor.flush()  # nothing buffered: the (empty) history object itself
    assert isinstance(history, MonitorHistory)
    for step in range(3):
        monitor.step(_backward(model, step))
        # Nothing read back to the host yet.
        assert history.losses == [] and history.grad_steps == [] and history.layer_grad_norms == []
    assert not monitor.flush_due
    flushed = monitor.flush()
    assert flushed is history
    assert history.loss_steps == [1, 2, 3]
    assert history.grad_steps == [1, 2, 3]
    assert monitor.history() is history  # flushing again adds nothing
    assert history.loss_steps == [1, 2, 3]


def test_step_never_reads_back(monkeypatch):
    # On the CPU a read-back cannot be timed, so check that step() calls none of the host
    # conversions (item, tolist, bool, float, ...) that would synchronise on an accelerator.
    model = _mlp()
    monitor = GradientMonitor(model, every=1, clip="norm:0.01", buffer_steps=10)
    losses = [_backward(model, 0)]

    def forbidden(*args, **kwargs):
        raise AssertionError("GradientMonitor.step() read a tensor back to the host")

    for method in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    monitor.step(losses[0])
    monitor.step(losses[0])
    monkeypatch.undo()
    history = monitor.history()
    assert history.loss_steps == [1, 2]
    assert len(history.total_norm_after) == 2


def test_buffer_auto_flushes_when_full():
    model = _mlp()
    monitor = GradientMonitor(model, every=1, buffer_steps=2)
    history = monitor.flush()
    seen = []
    for step in range(5):
        monitor.step(_backward(model, step))
        seen.append(len(history.losses))
    # Step 3 finds the buffer full (steps 1-2) and flushes it; step 5 flushes steps 3-4.
    assert seen == [0, 0, 2, 2, 4]
    assert monitor.flush_due is False
    monitor.flush()
    assert history.loss_steps == [1, 2, 3, 4, 5]
    assert len(history.losses) == 5
    assert history.grad_steps == [1, 2, 3, 4, 5]


def test_flush_due_and_manual_flush():
    model = _mlp()
    monitor = GradientMonitor(model, every=1, buffer_steps=2)
    monitor.step(_backward(model))
    assert not monitor.flush_due
    monitor.step(_backward(model))
    assert monitor.flush_due
    monitor.flush()
    assert not monitor.flush_due
    monitor.step(_backward(model))
    assert monitor.history().loss_steps == [1, 2, 3]


def test_context_manager_flushes():
    model = _mlp()
    with GradientMonitor(model, every=1) as monitor:
        history = monitor.flush()
        monitor.step(_backward(model))
        assert history.losses == []
    assert len(history.losses) == 1


# --------------------------------------------------------------------------- non-finite detection


def test_no_nonfinite_on_healthy_run():
    model = _mlp()
    monitor = GradientMonitor(model, every=1)
    for step in range(5):
        monitor.step(_backward(model, step))
    assert monitor.history().nonfinite is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_gradient_in_one_layer(value):
    model = _mlp(depth=3)  # layers.0, layers.2, layers.4, layers.6
    monitor = GradientMonitor(model, every=1)
    poison = {"on": False}
    # A hook on layers.4's weight makes its gradient (and only its) non-finite.
    model.layers[4].weight.register_hook(lambda g: g * value if poison["on"] else g)
    for step in range(1, 6):
        poison["on"] = step == 3
        monitor.step(_backward(model, step))
    history = monitor.history()
    assert history.nonfinite == NonFinite(3, "gradient", "layers.4")
    bad_row = history.layer_grad_norms[2]
    assert [math.isfinite(n) for n in bad_row] == [True, True, False, True]


def test_nonfinite_reports_layer_nearest_output():
    # NaN injected into the backward signal at layers.2's output: layers.2 and everything below
    # get NaN gradients; the output layers stay finite. The report names layers.2.
    model = _mlp(depth=3)
    monitor = GradientMonitor(model, every=1)
    poison = {"on": False}

    def forward_hook(module, inputs, output):
        if poison["on"]:
            output.register_hook(lambda g: g * math.nan)

    model.layers[2].register_forward_hook(forward_hook)
    for step in range(1, 5):
        poison["on"] = step >= 2
        monitor.step(_backward(model, step))
    history = monitor.history()
    assert history.nonfinite == NonFinite(2, "gradient", "layers.2")
    assert [math.isfinite(n) for n in history.layer_grad_norms[1]] == [False, False, True, True]
    assert math.isfinite(history.losses[1])


def test_nan_loss_is_reported_as_loss():
    model = _mlp()
    monitor = GradientMonitor(model, every=1)
    for step in range(1, 5):
        loss = _backward(model, step, scale=math.nan if step == 2 else 1.0)
        monitor.step(loss)
    history = monitor.history()
    assert history.nonfinite == NonFinite(2, "loss")
    assert math.isnan(history.losses[1])
    assert all(not math.isfinite(n) for n in history.layer_grad_norms[1])


def test_first_nonfinite_is_kept():
    model = _mlp()
    monitor = GradientMonitor(model, every=1, buffer_steps=2)
    for step in range(1, 6):
        loss = _backward(model, step)
        if step == 2:
            model.layers[0].weight.grad[0, 0] = math.inf
        if step >= 4:
            loss = loss * math.nan
        monitor.step(loss)
    assert monitor.history().nonfinite == NonFinite(2, "gradient", "layers.0")


def test_nonfinite_loss_detected_when_not_recording_grads():
    model = _mlp()
    monitor = GradientMonitor(model, every=0)
    monitor.step(torch.tensor(1.0))
    monitor.step(torch.tensor(math.inf))
    assert monitor.history().nonfinite == NonFinite(2, "loss")


def test_step_without_any_gradient_is_not_recorded():
    # E.g. step() before the first backward(): nothing to record, and above all no false
    # non-finite report from an unwritten (NaN) buffer row.
    model = _mlp()
    monitor = GradientMonitor(model, every=1)
    monitor.step(torch.tensor(1.0))
    history = monitor.history()
    assert history.nonfinite is None
    assert history.grad_steps == []
    assert history.loss_steps == [1]


def test_step_without_gradient_after_flush_does_not_reuse_stale_row():
    model = _mlp()
    monitor = GradientMonitor(model, every=1, buffer_steps=1)
    monitor.step(_backward(model))  # step 1 fills the single row
    model.zero_grad(set_to_none=True)
    monitor.step(torch.tensor(2.0))  # step 2: flushes step 1, then has no gradients
    history = monitor.history()
    assert history.grad_steps == [1]
    assert len(history.layer_grad_norms) == 1
    assert history.loss_steps == [1, 2]


def test_large_finite_gradients_are_combined_without_overflow():
    """Per-tensor norms within float32's range: their per-layer and global combination (sums of
    squares, in float64) does not overflow although the squares exceed float32's range."""
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e18)
    monitor = GradientMonitor(model, every=1)
    monitor.step()
    history = monitor.history()
    assert history.nonfinite is None
    assert history.layer_grad_norms[0][0] == pytest.approx(1e18 * math.sqrt(72), rel=1e-4)
    assert history.total_norm_before[0] == pytest.approx(1e18 * math.sqrt(144), rel=1e-4)


def test_a_norm_beyond_float32_range_is_non_finite_as_in_torch():
    """A gradient whose float32 norm overflows (above 3.4e38) is recorded as inf, exactly as
    torch.nn.utils.clip_grad_norm_ computes it: such a run has diverged for any practical lr."""
    model = nn.Sequential(nn.Linear(8, 8))
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e25)
    assert math.isinf(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
    monitor = GradientMonitor(model, every=1)
    monitor.step()
    assert monitor.history().nonfinite == NonFinite(1, "gradient", "0")


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(4, 4)
        self.decode = nn.Linear(4, 4)
        self.decode.weight = self.encode.weight  # tied weights, as in language models

    def forward(self, x):
        return self.decode(torch.tanh(self.encode(x)))


def test_tied_weights_counted_once():
    torch.manual_seed(0)
    model = _Tied()
    reference = _Tied()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(8, 4)
    for m in (model, reference):
        m(x).pow(2).sum().backward()
    torch_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1)
    monitor = GradientMonitor(model, every=1, clip="norm:0.1")
    monitor.step()
    history = monitor.history()
    assert history.total_norm_before[0] == pytest.approx(torch_norm.item(), rel=1e-5)
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-5)


# --------------------------------------------------------------------------- training is unchanged


def _train(monitor_kwargs: dict | None, steps: int = 20, torch_clip: float | None = None) -> tuple[nn.Module, MonitorHistory | None]:
    model = _mlp(7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    monitor = GradientMonitor(model, **monitor_kwargs) if monitor_kwargs is not None else None
    for step in range(steps):
        optimizer.zero_grad()
        x, y = _batch(step)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if monitor is not None:
            monitor.step(loss)
        if torch_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), torch_clip)
        optimizer.step()
    return model, monitor.history() if monitor is not None else None


@pytest.mark.parametrize("kwargs", [{"every": 1}, {"every": 3}, {"buffer_steps": 4}], ids=["every1", "every3", "buffer4"])
def test_monitor_does_not_change_training(kwargs):
    plain, _ = _train(None)
    monitored, history = _train({"clip": "none", **kwargs})
    for a, b in zip(plain.parameters(), monitored.parameters()):
        assert torch.equal(a, b)
    assert history is not None and len(history.losses) == 20
    assert history.nonfinite is None


def test_monitor_norm_clipping_trains_like_clip_grad_norm():
    with_torch, _ = _train(None, torch_clip=0.5)
    with_monitor, history = _train({"clip": "norm:0.5", "every": 1})
    for a, b in zip(with_torch.parameters(), with_monitor.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    unclipped, _ = _train(None)
    assert not all(torch.allclose(a, b) for a, b in zip(unclipped.parameters(), with_monitor.parameters()))
    assert history is not None
    assert all(after <= 0.5 * (1 + 1e-5) for after in history.total_norm_after)
    assert any(before > 0.5 for before in history.total_norm_before)


# --------------------------------------------------------------------------- invalid arguments


@pytest.mark.parametrize(
    "model_factory, kwargs, pattern",
    [
        (_mlp, {"every": -1}, r"invalid every=-1"),
        (_mlp, {"every": 1.5}, r"invalid every=1.5"),
        (_mlp, {"buffer_steps": 0}, r"invalid buffer_steps=0"),
        (_mlp, {"buffer_steps": -2}, r"invalid buffer_steps=-2"),
        (_mlp, {"buffer_steps": 2.0}, r"invalid buffer_steps=2.0"),
        (_mlp, {"clip": "nrom:1"}, r"unknown clip 'nrom' \(did you mean 'norm'\?\)"),
        (_mlp, {"clip": "norm:-1"}, r"invalid clip 'norm:-1'"),
        (nn.ReLU, {}, r"no trainable parameters"),
        (nn.Sequential, {}, r"no trainable parameters"),
        (lambda: nn.Linear(2, 2).requires_grad_(False), {}, r"no trainable parameters"),
    ],
    ids=["every-1", "every1.5", "buffer0", "buffer-2", "buffer2.0", "clip-typo", "clip-negative", "relu", "empty", "frozen"],
)
def test_invalid_arguments(model_factory, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GradientMonitor(model_factory(), **kwargs)


def test_clip_accepts_clipping_object():
    monitor = GradientMonitor(_mlp(), clip=Clipping("value", 0.5))
    assert monitor.clipping == Clipping("value", 0.5)


def test_losses_of_either_scalar_shape_and_missing_ones_read_back_in_order():
    model = _mlp()
    monitor = GradientMonitor(model, every=0, buffer_steps=4)
    given = [torch.tensor(1.5), torch.tensor([2.5]), None, torch.tensor(3.5, dtype=torch.float16), torch.tensor([4.5])]
    for loss in given:
        monitor.step(loss)
    history = monitor.history()
    assert history.loss_steps == [1, 2, 4, 5]
    assert history.losses == [1.5, 2.5, 3.5, 4.5]


class _OperationLog(torch.utils._python_dispatch.TorchDispatchMode):
    """Every aten operation dispatched while active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_a_recorded_step_costs_the_device_one_fused_norm_and_nothing_else():
    """The record is the per-tensor norms of one _foreach_norm, kept as they come: no stack,
    gather or per-layer reduction inside step() (they run on the host at the read-back)."""
    model = _mlp(depth=4)
    monitor = GradientMonitor(model, every=1, detail_every=0, weights=False, activations=False)
    loss = _backward(model)
    with _OperationLog() as log:
        monitor.step(loss)
    assert [name for name in log.names if name != "detach.default"] == ["_foreach_norm.Scalar"]
    assert monitor.history().layer_grad_norms[0] == pytest.approx(list(_layer_norms_reference(model).values()), rel=1e-6)


def test_norm_clipping_adds_only_the_global_norm_and_the_scaling():
    model = _mlp(depth=4)
    monitor = GradientMonitor(model, clip="norm:0.01", every=1, detail_every=0, weights=False, activations=False)
    loss = _backward(model)
    with _OperationLog() as log:
        monitor.step(loss)
    operations = [name for name in log.names if name != "detach.default"]
    assert operations[0] == "_foreach_norm.Scalar" and operations.count("_foreach_norm.Scalar") == 1
    assert len(operations) <= 8, operations  # stack, vector_norm, the coefficient, one _foreach_mul_


def test_the_optimizer_hooks_are_registered_only_around_detailed_steps():
    """A registered step hook costs every optimizer step a call: the monitor's are there from
    the step before a detailed step until its update is measured, and gone otherwise."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=2, detail_every=6, optimizer=optimizer)
    registered = []
    for step in range(1, 14):
        registered.append((step, bool(optimizer._optimizer_step_pre_hooks), bool(optimizer._optimizer_step_post_hooks)))
        monitor.step(_backward(model, seed=step))
        optimizer.step()
    # Detailed steps: 1, 7, 13; hooks from the step before each (the monitor's step() of step
    # 6 knows step 7 is detailed) through the detailed step's optimizer step.
    assert [step for step, pre, post in registered if pre and post] == [1, 2, 7, 8, 13]
    assert all(pre == post for _, pre, post in registered)
    history = monitor.history()
    ratios = {step: ratio for step, ratio in zip(history.grad_steps, history.layer_update_ratios) if ratio is not None}
    assert sorted(ratios) == [1, 7, 13]


def test_half_precision_gradients_get_float32_norms():
    """bfloat16 norms would keep three significant digits: the monitor asks for float32."""
    torch.manual_seed(0)
    model = _mlp(depth=3).to(torch.bfloat16)
    monitor = GradientMonitor(model, every=1, detail_every=0, weights=False, activations=False)
    x, y = _batch()
    nn.functional.cross_entropy(model(x.to(torch.bfloat16)).float(), y).backward()
    monitor.step()
    reference = [math.sqrt(sum(float(p.grad.float().square().sum()) for p in module.parameters(recurse=False))) for module in model.layers if any(True for _ in module.parameters(recurse=False))]
    recorded = monitor.history().layer_grad_norms[0]
    assert recorded == pytest.approx(reference, rel=1e-5)
    assert any(value != float(torch.tensor(value).to(torch.bfloat16)) for value in recorded)  # not bfloat16-rounded
