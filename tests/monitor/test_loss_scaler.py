"""The monitor under a loss scaler (fp16's GradScaler): scales and skipped steps recorded, a
skipped step not taken for divergence, a collapsed scale taken for it. GradScaler runs on the
CPU, so these drive the real scaler with float32 gradients and an injected overflow."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.axes.precision import MIN_LOSS_SCALE
from gradbench.monitor.gradient_monitor import GradientMonitor


def _loop(steps: int, overflow_at: set[int] | str, init_scale: float = 2.0**16, clip: str = "none"):
    """A scaled training loop; an Inf is written into one gradient (after backward, before
    unscale_) at the steps in ``overflow_at`` (``"all"``: every step). Returns the history and
    the weights after each step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    monitor = GradientMonitor(model, clip=clip, every=1, detail_every=0, optimizer=optimizer, scaler=scaler, buffer_steps=4)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    weights = []
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if overflow_at == "all" or step in overflow_at:
            model[2].weight.grad[0, 0] = math.inf
        scaler.unscale_(optimizer)
        monitor.step(loss)
        scaler.step(optimizer)
        scaler.update()
        weights.append(model[0].weight.detach().clone())
        if monitor.flush_due:
            monitor.flush()
    return monitor.history(), weights


@pytest.mark.parametrize("clip", ["none", "norm:1"])
def test_a_step_the_scaler_skips_is_recorded_and_is_not_divergence(clip):
    history, weights = _loop(6, {3}, clip=clip)
    assert history.skipped_steps == [3]
    assert history.nonfinite is None
    assert history.scale_steps == [1, 2, 3, 4, 5, 6]
    assert history.loss_scales == [2.0**16] * 3 + [2.0**15] * 3  # halved after the overflow
    assert torch.equal(weights[2], weights[1])  # the skipped step changed nothing
    assert not torch.equal(weights[3], weights[2])
    assert not math.isfinite(history.layer_grad_norms[2][1])  # its gradient norms are kept as they were
    assert all(math.isfinite(norm) for row in history.layer_grad_norms[3:] for norm in row)  # the norms of unscaled gradients


def test_a_scale_collapsed_to_one_is_divergence():
    """Every step overflows: the scale halves from 4 to 2 to 1, and the skip at scale 1 ends it."""
    history, _ = _loop(5, "all", init_scale=4.0)
    assert history.loss_scales[:3] == [4.0, 2.0, 1.0]
    assert history.skipped_steps[:3] == [1, 2, 3]
    assert history.nonfinite is not None and (history.nonfinite.step, history.nonfinite.quantity) == (3, "loss_scale")
    assert MIN_LOSS_SCALE == 1.0


def test_norms_are_of_the_unscaled_gradients():
    """With and without a scaler the recorded norms agree: the runner unscales before them."""
    scaled, _ = _loop(3, set())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=1, detail_every=0, optimizer=optimizer)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(loss)
        optimizer.step()
    plain = monitor.history()
    assert plain.scale_steps == [] and plain.skipped_steps == []
    for row, reference in zip(scaled.layer_grad_norms, plain.layer_grad_norms):
        assert row == pytest.approx(reference, rel=1e-5)


def test_the_monitor_asks_for_unscale_before_its_step():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    monitor = GradientMonitor(model, optimizer=optimizer, scaler=scaler)
    loss = model(torch.ones(2, 3)).sum()
    scaler.scale(loss).backward()
    with pytest.raises(RuntimeError, match=r"call scaler.unscale_\(optimizer\) before GradientMonitor.step"):
        monitor.step(loss)
    with pytest.raises(ValueError, match="scaler is given without the optimizer"):
        GradientMonitor(model, scaler=scaler)
