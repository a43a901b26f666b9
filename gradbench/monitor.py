"""``GradientMonitor``: per-layer gradient norms and the loss, recorded on the device.

Drop it into any training loop::

    monitor = GradientMonitor(model, clip="norm:1.0")
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        monitor.step(loss)        # record norms, then clip with the same norms
        optimizer.step()
    history = monitor.history()   # host-side records; history.nonfinite says where NaN/Inf began

A *layer* is a module that owns parameters directly (``layers.3`` of a Sequential, ``conv1``);
its gradient norm is the L2 norm of all its parameters' gradients together. Every ``every``
steps the monitor computes the per-parameter norms with one fused ``_foreach_norm``, combines
them per layer with one small matrix product (deterministic, unlike ``index_add_`` on CUDA),
and writes the row into a preallocated device buffer.
Nothing is read back to the host until ``flush()`` (one transfer for the whole buffer), which
the caller runs outside its timed region; ``step()`` itself never synchronises.

Per-tensor norms are computed in the gradients' dtype, as ``clip_grad_norm_`` computes them: a
float32 norm above 3.4e38 is recorded as inf, i.e. non-finite (the run has diverged for any
practical learning rate). Per-layer and global combinations are summed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from gradbench.clipping import Clipping, parse_clipping

__all__ = ["GradientMonitor", "MonitorHistory", "NonFinite", "model_layers"]


@dataclass(frozen=True)
class NonFinite:
    """Where the first NaN or Inf appeared.

    Attributes:
        step: The step, counting ``step()`` calls from 1.
        quantity: ``"loss"`` or ``"gradient"``.
        layer: For a gradient, the layer nearest the output whose gradient norm is not finite:
            back-propagation runs from the output down, so that is where it began.
    """

    step: int
    quantity: str
    layer: str | None = None


@dataclass
class MonitorHistory:
    """Everything the monitor recorded, on the host.

    Attributes:
        layer_names: Layer names in model order (first = nearest the input).
        loss_steps, losses: The loss at every step it was given (steps count from 1).
        grad_steps: Steps at which gradient norms were recorded.
        layer_grad_norms: One row per recorded step, one column per layer (before clipping).
        total_norm_before, total_norm_after: Global gradient norm before and after clipping.
        nonfinite: The first non-finite loss or gradient, if any.
    """

    layer_names: list[str]
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_steps: list[int] = field(default_factory=list)
    layer_grad_norms: list[list[float]] = field(default_factory=list)
    total_norm_before: list[float] = field(default_factory=list)
    total_norm_after: list[float] = field(default_factory=list)
    nonfinite: NonFinite | None = None


def model_layers(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The model's layers: (module name, its own trainable parameters), in registration order.

    A parameter shared by several modules (tied weights) belongs to the first one only, so its
    gradient is counted once, as ``clip_grad_norm_`` counts it.
    """
    layers = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            layers.append((name or type(module).__name__, own))
    return layers


class GradientMonitor:
    """Records per-layer gradient norms and the loss on the device; optionally clips.

    Create it after moving the model to its device. Under mixed precision with a
    ``GradScaler``, call ``scaler.unscale_(optimizer)`` before ``monitor.step``, so that norms
    and clipping see true gradients, not scaled ones (the infinities a scaler skips would
    otherwise be recorded as divergence).

    Args:
        model: Any ``nn.Module``; its trainable parameters are grouped by owning module.
        clip: A ``Clipping`` or its text (``"none"``, ``"norm:1.0"``, ``"value:0.5"``). Clipping
            reuses the norms the monitor computes rather than computing them again.
        every: Record gradient norms every ``every`` steps (``0``: never; the loss is still
            recorded every step and clipping still applies).
        buffer_steps: Steps held on the device between read-backs; ``flush()`` when
            ``flush_due`` is true, or the monitor flushes by itself (a synchronisation) when full.
    """

    def __init__(self, model: nn.Module, *, clip: Clipping | str = "none", every: int = 1, buffer_steps: int = 100) -> None:
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"invalid every={every!r}: must be an integer >= 0")
        if not isinstance(buffer_steps, int) or buffer_steps < 1:
            raise ValueError(f"invalid buffer_steps={buffer_steps!r}: must be an integer >= 1")
        self.clipping = parse_clipping(clip) if isinstance(clip, str) else clip
        self.every = every
        self.buffer_steps = buffer_steps
        layers = model_layers(model)
        if not layers:
            raise ValueError("the model has no trainable parameters to monitor")
        self.layer_names = [name for name, _ in layers]
        self._parameters = [p for _, params in layers for p in params]
        device = self._parameters[0].device
        self._device = device
        self._layer_of_parameter = [index for index, (_, params) in enumerate(layers) for _ in params]
        self._assignment_cache: dict[tuple[bool, ...], torch.Tensor] = {}
        # Per-tensor norms in the gradients' dtype, as clip_grad_norm_ computes them (float64
        # norms cost 3x on a 20-layer MLP); their squares are summed in float64 so that
        # combining large finite norms does not overflow (not on MPS, which has no float64).
        self._accumulate_dtype = torch.float32 if device.type == "mps" else torch.float64
        num_layers = len(self.layer_names)
        # One row per buffered step: [loss, layer norms..., global norm before, global norm after].
        self._buffer = torch.full((buffer_steps, num_layers + 3), math.nan, device=device)
        self._row = 0
        self._buffer_first_step = 1  # steps count from 1: step k is the k-th call of step()
        self._recorded: list[bool] = []
        self._has_loss: list[bool] = []
        self.steps = 0
        self._history = MonitorHistory(layer_names=list(self.layer_names))
        # Built now, not inside the first step: a host-to-device copy would synchronise there.
        self._assignment(tuple(True for _ in self._parameters))

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)

    @property
    def flush_due(self) -> bool:
        """True when the device buffer is full: call ``flush()`` before the next ``step()``."""
        return self._row >= self.buffer_steps

    def _assignment(self, present: tuple[bool, ...]) -> torch.Tensor:
        """[layers, most parameters in a layer] indices into the gradients' squared norms, padded
        with the index of an extra zero: ``squares[assignment].sum(1)`` is each layer's sum.

        A gather and a row sum rather than ``index_add_``, whose CUDA kernel adds with atomics in
        no fixed order (norms, and so norm clipping, would differ from run to run), and rather
        than a 0/1 matrix product, which would spread one layer's NaN to every layer (0 * NaN).
        """
        assignment = self._assignment_cache.get(present)
        if assignment is None:
            layers = [layer for layer, here in zip(self._layer_of_parameter, present) if here]
            members: list[list[int]] = [[] for _ in range(self.num_layers)]
            for position, layer in enumerate(layers):
                members[layer].append(position)
            padding = len(layers)  # the index of the zero appended to the squares
            width = max(1, max(len(m) for m in members))
            rows = [m + [padding] * (width - len(m)) for m in members]
            assignment = torch.tensor(rows, dtype=torch.long).to(self._device)
            self._assignment_cache[present] = assignment
        return assignment

    def step(self, loss: torch.Tensor | None = None) -> None:
        """Record this step (after ``backward()``, before ``optimizer.step()``) and clip.

        Never synchronises with the device, except to flush a full buffer the caller did not
        flush.
        """
        if self.flush_due:
            self.flush()
        if self._parameters[0].device != self._device:
            raise RuntimeError(
                f"GradientMonitor was created for {self._device} but the model is now on "
                f"{self._parameters[0].device}: create the monitor after model.to(device)"
            )
        row = self._buffer[self._row]
        if loss is not None:
            row[0].copy_(loss.detach().reshape(()))
        record = self.every > 0 and self.steps % self.every == 0  # steps 1, 1 + every, ...
        grads = [p.grad for p in self._parameters if p.grad is not None] if record or self.clipping.enabled else []
        record = record and bool(grads)  # no gradients (no backward yet): nothing to record
        if grads:
            norm_before = None
            if record:
                present = tuple(p.grad is not None for p in self._parameters)
                norms = torch.stack(torch._foreach_norm(grads)).to(self._accumulate_dtype)
                squares = torch.cat([norms.square(), norms.new_zeros(1)])
                layer_squares = squares[self._assignment(present)].sum(dim=1)
                row[1 : 1 + self.num_layers].copy_(layer_squares.sqrt())
                norm_before = layer_squares.sum().sqrt()
                row[-2].copy_(norm_before)
            if self.clipping.enabled:
                norm_after = self.clipping.apply(grads, norm_before)
                if record:
                    row[-1].copy_(norm_after)
            elif record and norm_before is not None:
                row[-1].copy_(norm_before)
        self._recorded.append(record)
        self._has_loss.append(loss is not None)
        self._row += 1
        self.steps += 1

    def flush(self) -> MonitorHistory:
        """Read the buffered steps back in one transfer and append them to the history."""
        if self._row == 0:
            return self._history
        rows = self._buffer[: self._row].tolist()
        history = self._history
        for offset, values in enumerate(rows):
            step = self._buffer_first_step + offset
            if self._has_loss[offset]:
                loss = values[0]
                history.loss_steps.append(step)
                history.losses.append(loss)
                if history.nonfinite is None and not math.isfinite(loss):
                    history.nonfinite = NonFinite(step, "loss")
            if self._recorded[offset]:
                norms = values[1 : 1 + self.num_layers]
                history.grad_steps.append(step)
                history.layer_grad_norms.append(norms)
                history.total_norm_before.append(values[-2])
                history.total_norm_after.append(values[-1])
                bad = [index for index, norm in enumerate(norms) if not math.isfinite(norm)]
                if history.nonfinite is None and bad:
                    history.nonfinite = NonFinite(step, "gradient", self.layer_names[max(bad)])
        self._buffer_first_step += self._row
        self._row = 0
        self._recorded.clear()
        self._has_loss.clear()
        return history

    def history(self) -> MonitorHistory:
        """Flush, then return everything recorded so far: one object, growing as the monitor
        records (copy it to keep a snapshot)."""
        return self.flush()

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
