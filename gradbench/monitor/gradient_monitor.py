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
the per-tensor norms per layer (``gradbench.monitor.layer_norms``) and derives the rest (norms
after norm clipping, global norms, ratios). Norm clipping takes its global norm from the same
per-tensor norms, as ``clip_grad_norm_`` does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

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
# 30-40% of a small CPU step when recorded (see bench/test_health_overhead.py).
DETAIL_FACTOR = 10


@dataclass
class _Record:
    """One recorded step's device tensors, kept as they come until ``flush()`` reads them back.

    Attributes:
        offset: The step's place among the buffered steps.
        groups: How the gradients present at this step group into layers.
        norms: Per-tensor norms: the gradients present, then (detailed, weights on) every weight.
        clip_total: The global norm that norm clipping scaled by.
        fired: Value clipping: whether some element was beyond the threshold.
        after: Value clipping: the gradients' per-tensor norms after it.
        updates: Per-parameter norms of ``W_before - W_after`` over the optimizer step.
        outputs: Per-layer norms of the back-propagated gradient at the layers' outputs.
    """

    offset: int
    groups: LayerGroups
    norms: list[torch.Tensor]
    clip_total: torch.Tensor | None = None
    fired: torch.Tensor | None = None
    after: list[torch.Tensor] | None = None
    updates: list[torch.Tensor] | None = None
    outputs: torch.Tensor | None = None

    def scalars(self) -> list[torch.Tensor]:
        """Its 0-d tensors in reading order: norms, [clip_total], [fired], [after], [updates]
        (``outputs``, a vector, apart)."""
        kept = list(self.norms)
        for extra in (self.clip_total, self.fired):
            if extra is not None:
                kept.append(extra)
        return kept + (self.after or []) + (self.updates or [])


@dataclass
class _Decoded:
    """One record read back: per-tensor norms combined per layer (``LayerGroups.combine`` rows:
    layers, weight parts, bias parts, global norm), and the values that need no combining."""

    offset: int
    gradients: list[float] = field(default_factory=list)
    weights: list[float] | None = None
    after: list[float] | None = None
    updates: list[float] | None = None
    clip_total: float | None = None
    fired: bool | None = None
    outputs: list[float] | None = None


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
        self._losses: list[torch.Tensor | None] = []
        self._records: list[_Record] = []
        self._activations_recorded: list[bool] = []
        self._buffer_first_step = 1  # steps count from 1: step k is the k-th call of step()
        self._update_record: _Record | None = None  # the record whose optimizer step is to be measured
        self._inside_update = False  # between the optimizer's pre- and post-step hooks
        self._snapshot_record: _Record | None = None  # ... and whose weights have been copied
        self.steps = 0
        self._record_next = every > 0  # step 1 is recorded
        self._detail_next = detail_every > 0
        self._history = MonitorHistory(layer_names=list(self.layer_names))
        # Update ratios: the optimizer's step hooks copy the weights before a detailed step's
        # update and measure the change after it. They are registered only around detailed
        # steps (from the step before one): a registered hook costs every optimizer step a call.
        self._optimizer = optimizer if detail_every else None
        self._update_hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._snapshots: list[torch.Tensor] = []
        if self._optimizer is not None:
            self._snapshots = [torch.empty_like(p, memory_format=torch.preserve_format) for p in self._parameters]
            self._arm_update_hooks(self._detail_next)
        self._activations = ActivationRecorder(model, buffer_steps) if activations and detail_every else None
        if self._activations is not None:
            self._activations.arm(self._detail_next)
        if self._output_gradients is not None:
            self._output_gradients.arm(self._detail_next)

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
        if len(self._losses) >= self.buffer_steps:
            self.flush()
        offset = len(self._losses)
        # The loss tensor itself is kept (a detached view, no copy; nothing writes into a loss
        # after backward): flush() stacks them, which saves an operation every step.
        self._losses.append(loss.detach() if loss is not None else None)
        if self._scaling is not None:
            self._scaler_states.append(scaler_state(*self._scaling))
        record, detail = self._record_next, self._detail_next
        self.steps += 1
        self._record_next = self.every > 0 and self.steps % self.every == 0
        self._detail_next = self.detail_every > 0 and self.steps % self.detail_every == 0
        written: _Record | None = None
        if record or self._clip_kind is not None:
            parameters = self._parameters
            if parameters[0].device != self._device:
                raise RuntimeError(
                    f"GradientMonitor was created for {self._device} but the model is now on "
                    f"{parameters[0].device}: create the monitor after model.to(device)"
                )
            grads = [grad for p in parameters if (grad := p.grad) is not None]
            if grads:  # no gradients (no backward yet): nothing to record or clip
                if record:
                    written = self._record(offset, grads, detail)
                else:
                    with torch.no_grad():
                        self.clipping.clip_(grads)
        detail = detail and written is not None
        activations_recorded = False
        if self._activations is not None:
            if detail:
                activations_recorded = self._activations.write(offset)
            else:
                self._activations.discard()
            self._activations.arm(self._detail_next)
        if self._output_gradients is not None:
            if detail:
                assert written is not None
                written.outputs = self._output_gradients.collect()
            else:
                self._output_gradients.discard()
            self._output_gradients.arm(self._detail_next)
        self._activations_recorded.append(activations_recorded)
        if self._optimizer is not None:
            self._update_record = written if detail and self._weights else None
            if self._inside_update and self._update_record is not None:
                # step() ran inside optimizer.step (a closure optimizer's first evaluation),
                # after the pre-step hook: the weights have not moved yet, so the copy is now.
                self._before_update(None, None, None)  # type: ignore[arg-type]
            self._arm_update_hooks(self._detail_next or self._update_record is not None or self._snapshot_record is not None)

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

    def _norms(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-tensor L2 norms, one fused operation (``gradbench.monitor.layer_norms``)."""
        if self._norm_dtype is None:
            return list(torch._foreach_norm(tensors))
        return list(torch._foreach_norm(tensors, 2, dtype=self._norm_dtype))

    def _record(self, offset: int, grads: list[torch.Tensor], detail: bool) -> _Record:
        """The gradients' norms (and, at a detailed step with weights on, the weights'), kept
        as device tensors; then clipping (with, for value clipping, whether it fired and the
        norms after it)."""
        parameters = self._parameters
        groups = self._all_present if len(grads) == len(parameters) else self._groups.groups(tuple(p.grad is not None for p in parameters))
        weights = detail and self._weights
        if weights or self._clip_kind is not None or grads[0].requires_grad:  # no autograd graph of norms
            with torch.no_grad():
                record = self._record_and_clip(offset, grads, groups, weights)
        else:  # the common case, without the no_grad context's cost
            record = _Record(offset, groups, self._norms(grads))
        self._records.append(record)
        return record

    def _record_and_clip(self, offset: int, grads: list[torch.Tensor], groups: LayerGroups, weights: bool) -> _Record:
        norms = self._norms(grads + self._parameters if weights else grads)
        record = _Record(offset, groups, norms)
        if self._clip_kind == "norm":
            # The global norm of the per-tensor norms, as clip_grad_norm_ computes it.
            record.clip_total = torch.linalg.vector_norm(torch.stack(norms[: len(grads)]))
            self.clipping.clip_(grads, record.clip_total)
        elif self._clip_kind == "value":
            # Fired: some element beyond the threshold (an exact test; norms could not tell a
            # barely clipped element from rounding). aminmax reads each gradient once.
            extremes = torch.stack([value for pair in map(torch.aminmax, grads) for value in pair])
            threshold = self.clipping.threshold
            assert threshold is not None  # value clipping always has one
            record.fired = extremes.abs().amax() > threshold
            self.clipping.clip_(grads)
            record.after = self._norms(grads)
        return record

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
        values, outputs, losses, scaling = self._read_back()
        activation_rows = self._activations.read(count) if self._activations is not None and any(self._activations_recorded) else []
        decoded = iter(self._decode(values, outputs))
        pending = next(decoded, None)
        for offset in range(count):
            step = self._buffer_first_step + offset
            if self._losses[offset] is not None:
                self._add_loss(step, losses[offset])
            skipped = False
            if scaling:
                overflow, scale = scaling[2 * offset], scaling[2 * offset + 1]
                skipped = overflow != 0
                self._add_scale(step, scale, skipped)
            if pending is not None and pending.offset == offset:
                self._add_record(step, pending, skipped)
                pending = next(decoded, None)
            if self._activations_recorded[offset]:
                self._add_activations(step, offset, activation_rows[offset])
        self._buffer_first_step += count
        self._losses.clear()
        self._scaler_states.clear()
        self._records.clear()
        self._activations_recorded.clear()
        return self._history

    def _read_back(self) -> tuple[list[float], list[float], dict[int, float], list[float]]:
        """Everything kept since the last flush, in one transfer: every record's 0-d tensors
        (in record order, each in ``_Record.scalars`` order), their output gradient norms, the
        losses by step offset, and under a loss scaler each step's overflow flag and scale
        (alternating). One stack of all the 0-d tensors, not one per record: a stack costs
        microseconds whatever it holds."""
        scalars = [tensor for record in self._records for tensor in record.scalars()]
        outputs = [record.outputs for record in self._records if record.outputs is not None]
        given = [(offset, loss) for offset, loss in enumerate(self._losses) if loss is not None]
        parts: list[torch.Tensor] = []
        if scalars:
            parts.append(torch.stack(scalars).to(self._device, torch.float64))
        if outputs:
            parts.append(torch.cat(outputs).to(self._device, torch.float64))
        if given:
            try:  # one stack for losses of one shape, () or (1,), as they come
                stacked = torch.stack([loss for _, loss in given]).reshape(len(given))
            except RuntimeError:
                stacked = torch.stack([loss.reshape(()) for _, loss in given])
            parts.append(stacked.to(self._device, torch.float64))
        scaling = [tensor.reshape(()) for state in self._scaler_states for tensor in state]
        if scaling:
            parts.append(torch.stack([tensor.to(self._device, torch.float64) for tensor in scaling]))
        flat = torch.cat(parts).tolist() if parts else []
        first_scaling = len(flat) - len(scaling)
        first_output, first_loss = len(scalars), first_scaling - len(given)
        losses = {offset: flat[first_loss + index] for index, (offset, _) in enumerate(given)}
        return flat[:first_output], flat[first_output:first_loss], losses, flat[first_scaling:]

    def _decode(self, values: list[float], outputs: list[float]) -> list[_Decoded]:
        """Split the read-back values by record (in ``_Record.scalars`` order), then combine
        every row of per-tensor norms per layer, one batch per grouping pattern."""
        decoded: list[_Decoded] = []
        rows: dict[int, tuple[LayerGroups, list[list[float]], list[tuple[_Decoded, str]]]] = {}

        def combine_later(groups: LayerGroups, row: list[float], item: _Decoded, name: str) -> None:
            _, batch, targets = rows.setdefault(id(groups), (groups, [], []))
            batch.append(row)
            targets.append((item, name))

        position = 0
        for record in self._records:
            present = record.groups.present
            item = _Decoded(record.offset)
            combine_later(record.groups, values[position : position + present], item, "gradients")
            position += present
            weights = len(record.norms) - present
            if weights:
                combine_later(self._all_present, values[position : position + weights], item, "weights")
                position += weights
            if record.clip_total is not None:
                item.clip_total, position = values[position], position + 1
            if record.fired is not None:
                item.fired, position = values[position] > 0.5, position + 1
            if record.after is not None:
                combine_later(record.groups, values[position : position + present], item, "after")
                position += present
            if record.updates is not None:
                combine_later(self._all_present, values[position : position + len(record.updates)], item, "updates")
                position += len(record.updates)
            if record.outputs is not None:
                item.outputs, outputs = outputs[: self.num_layers], outputs[self.num_layers :]
            decoded.append(item)
        for groups, batch, targets in rows.values():
            for combined, (item, name) in zip(groups.combine(batch), targets):
                setattr(item, name, combined)
        return decoded

    def _add_loss(self, step: int, loss: float) -> None:
        history = self._history
        history.loss_steps.append(step)
        history.losses.append(loss)
        if history.nonfinite is None and not math.isfinite(loss):
            history.nonfinite = NonFinite(step, "loss")

    def _add_scale(self, step: int, scale: float, skipped: bool) -> None:
        """A loss scaler's scale for this step and whether it skipped it; a skip at a scale of
        ``MIN_LOSS_SCALE`` or less is divergence: the gradients overflow unscaled."""
        history = self._history
        history.scale_steps.append(step)
        history.loss_scales.append(scale)
        if skipped:
            history.skipped_steps.append(step)
            if history.nonfinite is None and scale <= MIN_LOSS_SCALE:
                history.nonfinite = NonFinite(step, "loss_scale")

    def _add_record(self, step: int, item: _Decoded, skipped: bool = False) -> None:
        history, layers = self._history, self.num_layers
        combined = item.gradients
        norms, total = combined[:layers], combined[3 * layers]
        fired: bool | None = None
        if self._clip_kind == "norm" and item.clip_total is not None:
            # The coefficient from the global norm the device scaled by, as it computed it.
            coefficient = self.clipping.coefficient(item.clip_total)
            assert coefficient is not None
            after, total_after, fired = [norm * coefficient for norm in norms], total * coefficient, coefficient < 1.0
        elif item.after is not None:
            after, total_after, fired = item.after[:layers], item.after[3 * layers], item.fired
        else:
            after, total_after = list(norms), total
        history.grad_steps.append(step)
        history.layer_grad_norms.append(norms)
        has_weight, has_bias = self._has_part
        history.layer_weight_grad_norms.append([value if here else None for value, here in zip(combined[layers : 2 * layers], has_weight)])
        history.layer_bias_grad_norms.append([value if here else None for value, here in zip(combined[2 * layers : 3 * layers], has_bias)])
        outputs = item.outputs
        history.layer_output_grad_norms.append(None if outputs is None else [None if math.isnan(value) else value for value in outputs])
        history.layer_grad_norms_after.append(after)
        history.total_norm_before.append(total)
        history.total_norm_after.append(total_after)
        history.clip_fired.append(fired)
        weights = item.weights[:layers] if item.weights is not None else None
        history.layer_weight_norms.append(weights)
        updates = item.updates[:layers] if item.updates is not None and weights is not None else None
        ratios = None if updates is None else [update / weight if weight != 0 else None for update, weight in zip(updates, weights or [])]
        history.layer_update_ratios.append(ratios)
        if history.nonfinite is None:
            # Within a step: the loss (checked first), then the gradients, then the weights
            # (as the step began, and as the update left them). The gradients of a step the
            # loss scaler skipped overflowed after scaling: routine, judged by its scale.
            bad = [] if skipped else [index for index, norm in enumerate(norms) if not math.isfinite(norm)]
            if bad:
                history.nonfinite = NonFinite(step, "gradient", self.layer_names[max(bad)])
                return
            weight_norms = (weights or []) + (updates or [])
            bad = [index % layers for index, value in enumerate(weight_norms) if not math.isfinite(value)]
            if bad:
                history.nonfinite = NonFinite(step, "weight", self.layer_names[min(bad)])

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
