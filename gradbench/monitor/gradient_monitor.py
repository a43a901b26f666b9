"""``GradientMonitor``: per-layer gradient health recorded on the device, in any training loop.

Drop it into a loop::

    monitor = GradientMonitor(model, clip="norm:1.0", optimizer=optimizer)
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        monitor.step(loss)        # record, then clip with the norms just computed
        optimizer.step()          # the monitor's optimizer hooks measure the update
    history = monitor.history()   # host-side records; history.nonfinite says where NaN/Inf began

A *layer* is a module that owns parameters directly (``layers.3`` of a Sequential, ``conv1``,
a BatchNorm); its norms are the L2 norms of all its own parameters together. The loss is
recorded every step. Every ``every`` steps (steps 1, 1 + every, ...) the monitor also records,
per layer, the gradient norm before and after clipping, the same norm of its weights' gradients
and of its biases' apart (``gradbench.monitor.layer_norms``), and whether clipping changed the
gradients. Every ``detail_every`` steps (10 x ``every`` by default) it adds the weight norm, the
update-to-weight ratio ``||W_after - W_before|| / ||W_before||`` over the optimizer step that
follows (a copy of the weights and three more passes over them), the back-propagated gradient
at each layer's output (``gradbench.monitor.output_gradients``), and activation statistics from
forward hooks (``gradbench.monitor.activation_stats``): weights change slowly and these cost more.

At a recorded step one fused ``_foreach_norm`` computes the norm of every gradient (and, at a
detailed step, every weight) and that is all the device does for the record: the list of norm
tensors is kept as it is, like the loss tensor, and ``flush()`` stacks everything kept and reads
it back in one transfer (a second one for activation statistics), which the caller runs outside
its timed region. ``step()`` and the optimizer hooks never synchronise. The host then combines
the per-tensor norms per layer (``gradbench.monitor.layer_norms``), for all the records of a
read-back at once, and derives the rest (norms after norm clipping, global norms, ratios). Norm
clipping takes its global norm from the same per-tensor norms, as ``clip_grad_norm_`` does.

A step with nothing to record, clip or arm (nine in ten at the default cadence, without
clipping) only keeps its loss: ``step()`` knows the next step that needs more, and returns after
one append until then.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

import torch
from torch import nn

from gradbench.axes.clipping import Clipping, parse_clipping
from gradbench.axes.precision import MIN_LOSS_SCALE, scaler_state
from gradbench.monitor.activation_stats import ActivationRecorder
from gradbench.monitor.history import ActivationSite, MonitorHistory, NonFinite
from gradbench.monitor.layer_norms import LayerGroups, LayerNorms, is_bias, layer_modules, model_layers, norm_dtype
from gradbench.monitor.output_gradients import OutputGradients

__all__ = ["GradientMonitor", "MonitorHistory", "NonFinite", "model_layers", "DEFAULT_EVERY", "DETAIL_FACTOR"]

# Record every 10th step by default: a record is a memory-bound pass over the gradients, about
# 5% of a small CPU step; every 10th step, about 0.5%.
DEFAULT_EVERY = 10
# Weight norms, update ratios and activation statistics at every 10th record: together they cost
# 20-30% of a 20x256 MLP's CPU step and a whole step of a small one when recorded (see
# bench/test_health_overhead.py and the README's "What the statistics cost").
DETAIL_FACTOR = 10


@dataclass
class _Detail:
    """A detailed record's extra device tensors, kept as they come until ``flush()``.

    Attributes:
        weights: Per-parameter weight norms as the step began (weights on), else ``None``.
        updates: Per-parameter norms of ``W_before - W_after`` over the optimizer step.
        outputs: Per-layer norms of the back-propagated gradient at the layers' outputs.
    """

    weights: list[torch.Tensor] | None = None
    updates: Sequence[torch.Tensor] | None = None
    outputs: torch.Tensor | None = None


def _check_count(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"invalid {name}={value!r}: must be an integer >= {minimum}")


class GradientMonitor:
    """Records per-layer gradient health on the device; optionally clips.

    Create it after moving the model to its device. Under mixed precision with a
    ``GradScaler``, give it ``scaler=`` and call ``scaler.unscale_(optimizer)`` before
    ``monitor.step``, so that norms and clipping see true gradients, not scaled ones; the monitor
    then records the scale of every step and the steps the scaler skips. Call ``flush()`` after
    ``optimizer.step()``, not between ``monitor.step`` and it (an update not yet measured would
    be dropped).

    Args:
        model: Any ``nn.Module``; its trainable parameters are grouped by owning module.
        clip: A ``Clipping`` or its text (``"none"``, ``"norm:1.0"``, ``"value:0.5"``). Norm
            clipping reuses the norms the monitor computes; it applies at every step.
        every: Record gradient norms every ``every`` steps (``0``: never; the loss is still
            recorded every step and clipping still applies).
        detail_every: Record weight norms, update ratios and activation statistics every
            ``detail_every`` steps: a multiple of ``every``, or ``0`` for never (default:
            ``DETAIL_FACTOR`` x ``every``).
        buffer_steps: Steps held on the device between read-backs; ``flush()`` when
            ``flush_due`` is true, or the monitor flushes by itself (a synchronisation) when full.
        optimizer: The optimizer, for update ratios: its step hooks copy the weights before the
            update of a detailed step and measure the change after it (memory for one copy of
            the weights). Without it, no update ratios.
        weights: Record weight norms at detailed steps (and, with ``optimizer``, update ratios).
        activations: Record activation statistics and the back-propagated gradients at the
            layers' and activations' outputs at detailed steps, through forward and tensor hooks
            registered only for those steps' passes. Under ``torch.compile`` pass ``False``:
            compiled code does not follow hooks that come and go.
        scaler: The ``torch.amp.GradScaler`` of an ``fp16`` loop (needs ``optimizer``): each step's
            scale and overflow flag are kept on the device and read back with the rest. A step
            the scaler skips (non-finite gradients after scaling) is recorded in
            ``skipped_steps``, and its non-finite gradients are not divergence; a skip at a
            scale of ``MIN_LOSS_SCALE`` (1) or less is (quantity ``loss_scale``).

    Raises:
        ValueError: for an invalid argument or a model without trainable parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        clip: Clipping | str = "none",
        every: int = DEFAULT_EVERY,
        detail_every: int | None = None,
        buffer_steps: int = 100,
        optimizer: torch.optim.Optimizer | None = None,
        weights: bool = True,
        activations: bool = True,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        _check_count("every", every, 0)
        _check_count("buffer_steps", buffer_steps, 1)
        if detail_every is None:
            detail_every = DETAIL_FACTOR * every
        _check_count("detail_every", detail_every, 0)
        if detail_every and (every == 0 or detail_every % every):
            raise ValueError(f"invalid detail_every={detail_every}: must be 0 or a multiple of every={every}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"invalid optimizer={optimizer!r}: must be a torch.optim.Optimizer")
        if optimizer is not None and not weights:
            raise ValueError("optimizer is given for update ratios, which need weights=True")
        if scaler is not None and optimizer is None:
            raise ValueError("scaler is given without the optimizer it unscales: pass optimizer= too")
        # The scaler and the optimizer whose gradients it unscales (None: no loss scaling).
        self._scaling = (scaler, optimizer) if scaler is not None and scaler.is_enabled() and optimizer is not None else None
        self._scaler_states: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.clipping = parse_clipping(clip) if isinstance(clip, str) else clip
        self._clip_kind = self.clipping.kind if self.clipping.enabled else None
        self.every = every
        self.detail_every = detail_every
        self.buffer_steps = buffer_steps
        layers = layer_modules(model)
        if not layers:
            raise ValueError("the model has no trainable parameters to monitor")
        self.layer_names = [name for name, _, _ in layers]
        self._parameters: list[torch.Tensor] = [p for _, _, params in layers for _, p in params]
        self._device = device = self._parameters[0].device
        layer_of_parameter = [index for index, (_, _, params) in enumerate(layers) for _ in params]
        biases = [is_bias(leaf) for _, _, params in layers for leaf, _ in params]
        # Which layers have a weight part and a bias part (the other reads as None, not 0).
        self._has_part = ([any(not is_bias(leaf) for leaf, _ in params) for _, _, params in layers], [any(is_bias(leaf) for leaf, _ in params) for _, _, params in layers])
        self._groups = LayerNorms(layer_of_parameter, len(layers), biases)
        self._all_present = self._groups.groups()
        self._norm_dtype = norm_dtype({p.dtype for p in self._parameters})
        self._weights = weights
        self._output_gradients = OutputGradients(model, [module for _, module, _ in layers], device) if activations and detail_every else None
        # Buffered since the last flush. Per step: the loss (a detached view, no copy: nothing
        # writes into a loss after backward). Per record: its step offset and grouping, and its
        # gradients' per-tensor norms, all records' in one flat list as ``_foreach_norm`` gives
        # them; then what clipping adds to every record and detailed records add to theirs.
        self._losses: list[torch.Tensor] = []
        self._no_loss: list[int] = []  # the offsets of steps given no loss (NaN in _losses)
        self._record_offsets: list[int] = []
        self._record_groups: list[LayerGroups] = []
        self._grad_norms: list[torch.Tensor] = []
        self._clip_totals: list[torch.Tensor] = []  # norm clipping: the global norm it scaled by
        self._fired: list[torch.Tensor] = []  # value clipping: some element beyond the threshold ...
        self._after: list[torch.Tensor] = []  # ... and the per-tensor norms after it
        self._details: dict[int, _Detail] = {}  # by record index
        self._activation_offsets: list[int] = []  # the steps with activation statistics
        self._buffer_first_step = 1  # steps count from 1: step k is the k-th call of step()
        self._update_record: _Detail | None = None  # the record whose optimizer step is to be measured
        self._inside_update = False  # between the optimizer's pre- and post-step hooks
        self._snapshot_record: _Detail | None = None  # ... and whose weights have been copied
        self.steps = 0
        self._next_full = 1  # the next step that does more than keep its loss (step 1 records)
        self._plain_before = 0  # the steps that need more before this one are plain records
        self._missing = torch.full((), math.nan, device=device)  # the loss of a step given none
        detail_first = detail_every > 0
        self._history = MonitorHistory(layer_names=list(self.layer_names))
        # Update ratios: the optimizer's step hooks copy the weights before a detailed step's
        # update and measure the change after it. They are registered only around detailed
        # steps (from the step before one): a registered hook costs every optimizer step a call.
        self._optimizer = optimizer if detail_every else None
        self._update_hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._snapshots: list[torch.Tensor] = []
        if self._optimizer is not None:
            self._snapshots = [torch.empty_like(p, memory_format=torch.preserve_format) for p in self._parameters]
            self._arm_update_hooks(detail_first)
        self._activations = ActivationRecorder(model, buffer_steps) if activations and detail_every else None
        if self._activations is not None:
            self._activations.arm(detail_first)
        if self._output_gradients is not None:
            self._output_gradients.arm(detail_first)

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)

    @property
    def flush_due(self) -> bool:
        """True when the device buffer is full: call ``flush()`` before the next ``step()``."""
        return len(self._losses) >= self.buffer_steps

    @property
    def activation_sites(self) -> list[ActivationSite]:
        """The activation calls observed so far (empty until a recorded step with activations)."""
        return list(self._activations.sites) if self._activations is not None else []

    def step(self, loss: torch.Tensor | None = None) -> None:
        """Record this step (after ``backward()``, before ``optimizer.step()``) and clip.

        Never synchronises with the device, except to flush a full buffer the caller did not
        flush.
        """
        losses = self._losses
        if len(losses) >= self.buffer_steps:
            self.flush()
        if loss is not None:
            losses.append(loss.detach())
        else:
            self._no_loss.append(len(losses))
            losses.append(self._missing)
        self.steps += 1
        if self.steps >= self._next_full:
            if self.steps < self._plain_before:
                self._plain_record(len(losses) - 1)
            else:
                self._full_step(len(losses) - 1)
        # Any other step only keeps its loss: no record, no clipping, no hooks to arm or disarm.

    def _plain_record(self, offset: int) -> None:
        """A recorded step with nothing else to do (no clipping, no loss scaler, no detailed
        statistics due): the gradients' norms and nothing more. The short way, because it runs
        once in ``every`` steps, on code and caches the training step has made cold."""
        parameters = self._parameters
        grads = [grad for p in parameters if (grad := p.grad) is not None]
        if grads:
            self._check_device()
            self._record(offset, grads, False)
        self._next_full = min(self.steps + self.every, self._plain_before)

    def _check_device(self) -> None:
        device = self._parameters[0].device
        if device != self._device:
            raise RuntimeError(
                f"GradientMonitor was created for {self._device} but the model is now on "
                f"{device}: create the monitor after model.to(device)"
            )

    def _full_step(self, offset: int) -> None:
        """Everything but the loss: record (at recorded steps), clip, and arm or disarm the
        hooks of a detailed step; then find the next step that needs any of it."""
        if self._scaling is not None:
            self._scaler_states.append(scaler_state(*self._scaling))
        steps, every, detail_every = self.steps, self.every, self.detail_every
        record = every > 0 and (steps - 1) % every == 0
        detail = record and detail_every > 0 and (steps - 1) % detail_every == 0
        detail_next = detail_every > 0 and steps % detail_every == 0
        written: _Detail | None = None
        recorded = False
        if record or self._clip_kind is not None:
            self._check_device()
            grads = [grad for p in self._parameters if (grad := p.grad) is not None]
            if grads:  # no gradients (no backward yet): nothing to record or clip
                if record:
                    written = self._record(offset, grads, detail)
                    recorded = True
                else:
                    with torch.no_grad():
                        self.clipping.clip_(grads)
        detail = detail and recorded
        if self._activations is not None:
            if detail and self._activations.write(offset):
                self._activation_offsets.append(offset)
            else:
                self._activations.discard()
            self._activations.arm(detail_next)
        if self._output_gradients is not None:
            if detail:
                assert written is not None
                written.outputs = self._output_gradients.collect()
            else:
                self._output_gradients.discard()
            self._output_gradients.arm(detail_next)
        if self._optimizer is not None:
            self._update_record = written if detail and self._weights else None
            if self._inside_update and self._update_record is not None:
                # step() ran inside optimizer.step (a closure optimizer's first evaluation),
                # after the pre-step hook: the weights have not moved yet, so the copy is now.
                self._before_update(None, None, None)  # type: ignore[arg-type]
            self._arm_update_hooks(detail_next or self._update_record is not None or self._snapshot_record is not None)
        self._next_full, self._plain_before = self._next_full_step(detail_next)

    def _next_full_step(self, detail_next: bool) -> tuple[int, int]:
        """The next step that needs more than its loss kept: every step under clipping or loss
        scaling, or while any hook is armed (the one after a detailed step disarms them); else
        the next recorded step or the step before the next detailed one (it arms the hooks).
        And the step before which any step that needs more is a plain record (0: none is)."""
        steps = self.steps
        armed = (
            bool(self._update_hooks)
            or (self._activations is not None and self._activations.armed)
            or (self._output_gradients is not None and self._output_gradients.armed)
        )
        if detail_next or armed or self._clip_kind is not None or self._scaling is not None:
            return steps + 1, 0
        arming = steps + (-steps) % self.detail_every if self.detail_every else sys.maxsize  # before the next detailed step
        return (min(1 + steps + (-steps) % self.every, arming) if self.every else arming), arming

    def _arm_update_hooks(self, on: bool) -> None:
        """Register the optimizer step hooks (``on``) or remove them."""
        if on == bool(self._update_hooks) or self._optimizer is None:
            return
        if on:
            optimizer = self._optimizer
            self._update_hooks = [optimizer.register_step_pre_hook(self._before_update), optimizer.register_step_post_hook(self._after_update)]
        else:
            for handle in self._update_hooks:
                handle.remove()
            self._update_hooks = []
            self._inside_update = False  # the post-step hook that would say so is gone

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Forward and tensor hooks off while the caller runs the model for something else
        (the Jacobians' probe pass, whose vector-Jacobian products would reach the hooks)."""
        recorders = [r for r in (self._activations, self._output_gradients) if r is not None]
        armed = [recorder.armed for recorder in recorders]
        for recorder in recorders:
            recorder.arm(False)
        try:
            yield
        finally:
            for recorder, on in zip(recorders, armed):
                recorder.arm(on)

    def clip(self) -> None:
        """Clip the current gradients without recording anything: for the further loss
        evaluations of one optimizer step (L-BFGS's closure), whose first one ``step`` saw."""
        if self._clip_kind is None:
            return
        grads = [grad for p in self._parameters if (grad := p.grad) is not None]
        if grads:
            with torch.no_grad():
                self.clipping.clip_(grads)

    def _norms(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Per-tensor L2 norms, one fused operation (``gradbench.monitor.layer_norms``)."""
        if self._norm_dtype is None:
            return torch._foreach_norm(tensors)
        return torch._foreach_norm(tensors, 2, dtype=self._norm_dtype)

    def _record(self, offset: int, grads: list[torch.Tensor], detail: bool) -> _Detail | None:
        """The gradients' norms (and, at a detailed step with weights on, the weights'), kept
        as device tensors; then clipping (with, for value clipping, whether it fired and the
        norms after it). Returns a detailed step's ``_Detail``."""
        parameters = self._parameters
        present = len(grads)
        groups = self._all_present if present == len(parameters) else self._groups.groups(tuple(p.grad is not None for p in parameters))
        weights = detail and self._weights
        if weights or self._clip_kind is not None or grads[0].requires_grad:  # no autograd graph of norms
            with torch.no_grad():
                norms = self._norms(grads + parameters if weights else grads)
                self._clip(grads, norms[:present])
        else:  # the common case, without the no_grad context's cost
            norms = self._norms(grads)
        self._record_offsets.append(offset)
        self._record_groups.append(groups)
        if not detail:
            self._grad_norms += norms
            return None
        self._grad_norms += norms[:present]
        written = self._details[len(self._record_offsets) - 1] = _Detail(weights=list(norms[present:]) if weights else None)
        return written

    def _clip(self, grads: list[torch.Tensor], norms: tuple[torch.Tensor, ...]) -> None:
        """Clip a recorded step's gradients, keeping what the record needs: for norm clipping
        the global norm of the per-tensor norms (as ``clip_grad_norm_`` computes it), for value
        clipping whether it fired and the norms after it."""
        if self._clip_kind == "norm":
            total = torch.linalg.vector_norm(torch.stack(norms))
            self._clip_totals.append(total)
            self.clipping.clip_(grads, total)
        elif self._clip_kind == "value":
            # Fired: some element beyond the threshold (an exact test; norms could not tell a
            # barely clipped element from rounding). aminmax reads each gradient once.
            extremes = torch.stack([value for pair in map(torch.aminmax, grads) for value in pair])
            threshold = self.clipping.threshold
            assert threshold is not None  # value clipping always has one
            self._fired.append(extremes.abs().amax() > threshold)
            self.clipping.clip_(grads)
            self._after += self._norms(grads)

    def _before_update(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        """Optimizer pre-step hook: at a detailed step, copy the weights the update will change."""
        self._inside_update = True
        if self._update_record is None:
            return
        with torch.no_grad():
            torch._foreach_copy_(self._snapshots, self._parameters)
        self._snapshot_record, self._update_record = self._update_record, None

    def _after_update(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        """Optimizer post-step hook: the norm of each parameter's update, kept."""
        self._inside_update = False
        record = self._snapshot_record
        if record is None:
            return
        self._snapshot_record = None
        with torch.no_grad():
            torch._foreach_sub_(self._snapshots, self._parameters)  # now W_before - W_after
            record.updates = self._norms(self._snapshots)

    def flush(self) -> MonitorHistory:
        """Read the buffered steps back in one transfer and append them to the history."""
        count = len(self._losses)
        if count == 0:
            return self._history
        self._update_record = self._snapshot_record = None  # an update not yet measured is dropped
        first = self._buffer_first_step
        values, outputs = self._read_back()
        candidates: list[tuple[int, int, NonFinite]] = []  # (step, order within the step, where)
        scaling = 2 * len(self._scaler_states)
        skipped = self._add_scales(first, values[len(values) - scaling :], candidates) if scaling else None
        self._add_losses(first, values[len(values) - scaling - count : len(values) - scaling], candidates)
        if self._record_offsets:
            self._add_records(first, values, outputs, skipped, candidates)
        if self._activation_offsets:
            assert self._activations is not None
            rows = self._activations.read(count)
            for offset in self._activation_offsets:
                self._add_activations(first + offset, offset, rows[offset])
        if candidates and self._history.nonfinite is None:
            self._history.nonfinite = min(candidates, key=lambda candidate: candidate[:2])[2]
        self._buffer_first_step += count
        for kept in (self._losses, self._no_loss, self._scaler_states, self._record_offsets, self._record_groups, self._grad_norms, self._clip_totals, self._fired, self._after, self._activation_offsets):
            kept.clear()
        self._details.clear()
        return self._history

    def _read_back(self) -> tuple[list[float], list[float]]:
        """Everything kept since the last flush, in one transfer: one stack of every 0-d tensor
        (a stack costs microseconds whatever it holds), and the output gradient norms. The stack
        holds the records' scalars (gradient norms, clip totals, fired flags, norms after value
        clipping, then each detailed record's weight and update norms), then one value per
        step, the loss (NaN where none was given), then under a loss scaler each step's
        overflow flag and scale. Values come back in the widest dtype they were computed in:
        a float32 norm is a Python float exactly."""
        scalars = self._grad_norms + self._clip_totals + self._fired + self._after
        outputs = []
        for index in sorted(self._details):
            detail = self._details[index]
            scalars += (detail.weights or []) + list(detail.updates or [])
            if detail.outputs is not None:
                outputs.append(detail.outputs)
        scalars += self._losses
        scalars += [tensor.reshape(()) for state in self._scaler_states for tensor in state]
        try:  # one stack for 0-d tensors, as they come
            stacked = torch.stack(scalars).reshape(len(scalars))
        except RuntimeError:  # a loss of shape (1,), or scaler state on another device
            stacked = torch.stack([tensor.reshape(()).to(self._device) for tensor in scalars])
        if not outputs:
            return stacked.tolist(), []
        size = sum(output.numel() for output in outputs)
        flat = torch.cat([*outputs, stacked]).tolist()
        return flat[size:], flat[:size]

    def _add_scales(self, first: int, scaling: list[float], candidates: list[tuple[int, int, NonFinite]]) -> list[bool]:
        """A loss scaler's scale for each step and whether it skipped it; a skip at a scale of
        ``MIN_LOSS_SCALE`` or less is divergence: the gradients overflow unscaled. Returns the
        skip flag by step offset."""
        history = self._history
        overflows, scales = scaling[0::2], scaling[1::2]
        skipped = [overflow != 0 for overflow in overflows]
        history.scale_steps += range(first, first + len(scales))
        history.loss_scales += scales
        history.skipped_steps += [first + offset for offset, skip in enumerate(skipped) if skip]
        stuck = next((offset for offset, (skip, scale) in enumerate(zip(skipped, scales)) if skip and scale <= MIN_LOSS_SCALE), None)
        if stuck is not None:
            candidates.append((first + stuck, 1, NonFinite(first + stuck, "loss_scale")))
        return skipped

    def _add_losses(self, first: int, losses: list[float], candidates: list[tuple[int, int, NonFinite]]) -> None:
        history = self._history
        if not self._no_loss:
            history.loss_steps += range(first, first + len(losses))
            history.losses += losses
        else:
            missing = set(self._no_loss)
            given = [offset for offset in range(len(losses)) if offset not in missing]
            history.loss_steps += [first + offset for offset in given]
            history.losses += [losses[offset] for offset in given]
            losses = [0.0 if offset in missing else loss for offset, loss in enumerate(losses)]
        if not math.isfinite(sum(losses)):  # a sum is finite only if every term is (or overflows)
            offset = next((offset for offset, loss in enumerate(losses) if not math.isfinite(loss)), None)
            if offset is not None:
                candidates.append((first + offset, 0, NonFinite(first + offset, "loss")))

    def _combined(self, norms: np.ndarray, groups: list[LayerGroups]) -> np.ndarray:
        """The rows ``LayerGroups.combine`` makes (layers, weight parts, bias parts, global norm),
        one per record, from all records' per-tensor norms laid end to end: one batch per
        grouping pattern (one in all, unless some gradients were missing at some steps)."""
        if all(group is groups[0] for group in groups):
            return groups[0].combine(norms.reshape(len(groups), groups[0].present))
        combined = np.empty((len(groups), 3 * self.num_layers + 1))
        ends = np.cumsum([group.present for group in groups])
        patterns: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            patterns.setdefault(id(group), []).append(index)
        for indices in patterns.values():
            group = groups[indices[0]]
            rows = np.stack([norms[ends[index] - group.present : ends[index]] for index in indices])
            combined[indices] = group.combine(rows)
        return combined

    def _add_records(self, first: int, values: list[float], outputs: list[float], skipped: list[bool] | None, candidates: list[tuple[int, int, NonFinite]]) -> None:
        """Append every buffered record to the history, the gradient columns for all records at
        once; detailed records' weights, updates and output gradients one by one."""
        history, layers, groups = self._history, self.num_layers, self._record_groups
        count = len(groups)
        present = sum(group.present for group in groups)
        position = present
        combined = self._combined(np.asarray(values[:present]), groups)
        norms, total = combined[:, :layers], combined[:, 3 * layers]
        fired: list[bool | None] = [None] * count
        if self._clip_kind == "norm":
            # The coefficient from the global norm the device scaled by, as it computed it.
            coefficients = np.array([self.clipping.coefficient(total) for total in values[position : position + count]], dtype=np.float64)
            position += count
            with np.errstate(invalid="ignore"):  # an infinite norm times 0 is NaN, as in Python
                after, total_after = norms * coefficients[:, None], total * coefficients
            fired = (coefficients < 1.0).tolist()
        elif self._clip_kind == "value":
            fired = [value > 0.5 for value in values[position : position + count]]
            position += count
            combined_after = self._combined(np.asarray(values[position : position + present]), groups)
            position += present
            after, total_after = combined_after[:, :layers], combined_after[:, 3 * layers]
        else:
            after, total_after = norms, total
        steps = [first + offset for offset in self._record_offsets]
        history.grad_steps += steps
        history.layer_grad_norms += norms.tolist()
        has_weight, has_bias = self._has_part
        for column, has, start in ((history.layer_weight_grad_norms, has_weight, layers), (history.layer_bias_grad_norms, has_bias, 2 * layers)):
            rows = combined[:, start : start + layers].tolist()
            column += rows if all(has) else [[value if here else None for value, here in zip(row, has)] for row in rows]
        history.layer_grad_norms_after += after.tolist()
        history.total_norm_before += total.tolist()
        history.total_norm_after += total_after.tolist()
        history.clip_fired += fired
        weight_rows: list[list[float] | None] = [None] * count
        ratio_rows: list[list[float | None] | None] = [None] * count
        output_rows: list[list[float | None] | None] = [None] * count
        for index in sorted(self._details):
            detail = self._details[index]
            weights = updates = None
            if detail.weights is not None:
                weights = self._all_present.combine(np.asarray(values[position : position + len(detail.weights)])[None])[0, :layers].tolist()
                position += len(detail.weights)
                weight_rows[index] = weights
            if detail.updates is not None:
                update_norms = np.asarray(values[position : position + len(detail.updates)])
                position += len(detail.updates)
                if weights is not None:
                    updates = self._all_present.combine(update_norms[None])[0, :layers].tolist()
                    ratio_rows[index] = [update / weight if weight != 0 else None for update, weight in zip(updates, weights)]
            if detail.outputs is not None:
                output_rows[index] = [None if math.isnan(value) else value for value in outputs[:layers]]
                outputs = outputs[layers:]
            # Within a step: the loss, then the gradients, then the weights (as the step began,
            # and as the update left them).
            bad = [place % layers for place, value in enumerate((weights or []) + (updates or [])) if not math.isfinite(value)]
            if bad:
                step = steps[index]
                candidates.append((step, 3, NonFinite(step, "weight", self.layer_names[min(bad)])))
        history.layer_weight_norms += weight_rows
        history.layer_update_ratios += ratio_rows
        history.layer_output_grad_norms += output_rows
        # The gradients of a step the loss scaler skipped overflowed after scaling: routine,
        # judged by its scale.
        bad_rows = ~np.isfinite(norms).all(axis=1)
        if skipped is not None:
            bad_rows &= ~np.asarray(skipped)[self._record_offsets]
        if bad_rows.any():
            index = int(np.flatnonzero(bad_rows)[0])
            layer = int(np.flatnonzero(~np.isfinite(norms[index]))[-1])  # the nearest the output
            candidates.append((steps[index], 2, NonFinite(steps[index], "gradient", self.layer_names[layer])))

    def _add_activations(self, step: int, offset: int, values: list[float]) -> None:
        assert self._activations is not None
        history = self._history
        if not history.activation_sites:
            history.activation_sites = list(self._activations.sites)
        record = self._activations.decode(offset, values)
        history.activation_steps.append(step)
        history.dead_fraction.append(record.dead)
        history.saturated_fraction.append(record.saturated)
        history.pinned_fraction.append(record.pinned)
        history.activation_mean.append(record.means)
        history.activation_std.append(record.stds)
        history.activation_output_grad_norms.append(record.output_grad_norms)

    def history(self) -> MonitorHistory:
        """Flush, then return everything recorded so far: one object, growing as the monitor
        records (copy it to keep a snapshot)."""
        return self.flush()

    def close(self) -> None:
        """Remove the monitor's optimizer and forward hooks (the records stay)."""
        self._arm_update_hooks(False)
        self._optimizer = None
        self._snapshots = []
        if self._activations is not None:
            self._activations.close()
        if self._output_gradients is not None:
            self._output_gradients.close()

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
        self.close()
