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

At a recorded step one fused ``_foreach_norm`` computes the norms of all gradients (and, at a
detailed step, weights) together and three more operations combine them per layer (``gradbench.monitor.layer_norms``), straight
into a preallocated device buffer. Nothing is read back until ``flush()`` (one transfer for the
buffer, a second for activation statistics), which the caller runs outside its timed region;
``step()`` and the optimizer hooks never synchronise. Quantities derived from recorded ones
(norms after norm clipping, global norms, ratios) are computed on the host at the read-back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from gradbench.axes.clipping import Clipping, parse_clipping
from gradbench.monitor.activation_stats import ActivationRecorder
from gradbench.monitor.history import ActivationSite, MonitorHistory, NonFinite
from gradbench.monitor.layer_norms import LayerNorms, is_bias, layer_modules, model_layers
from gradbench.monitor.output_gradients import OutputGradients

__all__ = ["GradientMonitor", "MonitorHistory", "NonFinite", "model_layers", "DEFAULT_EVERY", "DETAIL_FACTOR"]

# Record every 10th step by default: a record is a memory-bound pass over the gradients, about
# 5% of a small CPU step; every 10th step, about 0.5%.
DEFAULT_EVERY = 10
# Weight norms, update ratios and activation statistics at every 10th record: together they cost
# 30-40% of a small CPU step when recorded (see bench/test_health_overhead.py).
DETAIL_FACTOR = 10


def _check_count(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"invalid {name}={value!r}: must be an integer >= {minimum}")


class GradientMonitor:
    """Records per-layer gradient health on the device; optionally clips.

    Create it after moving the model to its device. Under mixed precision with a
    ``GradScaler``, call ``scaler.unscale_(optimizer)`` before ``monitor.step``, so that norms
    and clipping see true gradients, not scaled ones. Call ``flush()`` after
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
        self._layer_norms = LayerNorms(layer_of_parameter, len(layers), device, {p.dtype for p in self._parameters}, biases)
        self._weights = weights
        self._output_gradients = OutputGradients(model, [module for _, module, _ in layers], device) if activations and detail_every else None
        self._layout(optimizer is not None and detail_every > 0)
        self._buffer = torch.full((buffer_steps, self._width), math.nan, dtype=self._layer_norms.accumulate_dtype, device=device)
        self._views(buffer_steps)
        self._row = 0
        self._buffer_first_step = 1  # steps count from 1: step k is the k-th call of step()
        self._recorded: list[bool] = []
        self._detailed: list[bool] = []
        self._losses: list[torch.Tensor | None] = []
        self._activations_recorded: list[bool] = []
        self._updated = [False] * buffer_steps
        self._update_row: int | None = None  # the row whose optimizer step is to be measured
        self._inside_update = False  # between the optimizer's pre- and post-step hooks
        self._snapshot_row: int | None = None  # ... and whose weights have been copied
        self.steps = 0
        self._record_next = every > 0  # step 1 is recorded
        self._detail_next = detail_every > 0
        self._history = MonitorHistory(layer_names=list(self.layer_names))
        self._hooks = []
        self._snapshots: list[torch.Tensor] = []
        if optimizer is not None and detail_every:
            self._snapshots = [torch.empty_like(p, memory_format=torch.preserve_format) for p in self._parameters]
            self._hooks = [optimizer.register_step_pre_hook(self._before_update), optimizer.register_step_post_hook(self._after_update)]
        self._activations = ActivationRecorder(model, buffer_steps) if activations and detail_every else None
        if self._activations is not None:
            self._activations.arm(self._detail_next)
        if self._output_gradients is not None:
            self._output_gradients.arm(self._detail_next)
        # Built now, not inside the first step: a host-to-device copy would synchronise there.
        self._detail_assignment = self._layer_norms.assignment(None, weights, with_total=True, with_split=True)
        self._full_assignment = self._layer_norms.assignment(None, False, with_total=True, with_split=True)
        self._layer_norms.assignment()  # updates, and norms after value clipping

    def _layout(self, updates: bool) -> None:
        """Columns of a buffer row: loss, gradient norms, global gradient norm, the gradient
        norms of the weights and of the biases apart, [weight norms], [output gradient norms],
        [update norms], [gradient norms after value clipping, value clipping fired]. The
        gradient norms, their global norm, their parts and the weight norms are adjacent, in
        the order of the assignment's rows, so that one operation writes them all."""
        num_layers = len(self.layer_names)
        self._total_column = 1 + num_layers
        self._split_column = self._total_column + 1
        self._weight_column = self._split_column + 2 * num_layers
        column = self._weight_column + (num_layers if self._weights else 0)
        self._update_column = self._after_column = self._fired_column = self._output_column = -1
        if self._output_gradients is not None:
            self._output_column, column = column, column + num_layers
        if updates:
            self._update_column, column = column, column + num_layers
        if self._clip_kind == "value":
            self._after_column, self._fired_column, column = column, column + num_layers, column + num_layers + 1
        self._width = column

    def _views(self, rows: int) -> None:
        """Views of each row's slots, made once: slicing costs microseconds a step."""
        buffer = self._buffer

        def views(column: int, width: int | None) -> list[torch.Tensor]:
            if column < 0:
                return []
            return [buffer[row, column] if width is None else buffer[row, column : column + width] for row in range(rows)]

        self._norm_views = views(1, self.num_layers * (4 if self._weights else 3) + 1)
        self._grad_norm_views = views(1, self.num_layers * 3 + 1)
        self._output_views = views(self._output_column, self.num_layers)
        self._update_views = views(self._update_column, self.num_layers)
        self._after_views = views(self._after_column, self.num_layers)
        self._total_views = views(self._total_column, None)
        self._fired_views = views(self._fired_column, None)

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)

    @property
    def flush_due(self) -> bool:
        """True when the device buffer is full: call ``flush()`` before the next ``step()``."""
        return self._row >= self.buffer_steps

    @property
    def activation_sites(self) -> list[ActivationSite]:
        """The activation calls observed so far (empty until a recorded step with activations)."""
        return list(self._activations.sites) if self._activations is not None else []

    def step(self, loss: torch.Tensor | None = None) -> None:
        """Record this step (after ``backward()``, before ``optimizer.step()``) and clip.

        Never synchronises with the device, except to flush a full buffer the caller did not
        flush.
        """
        if self._row >= self.buffer_steps:
            self.flush()
        row = self._row
        # The loss tensor itself is kept (a detached view, no copy; nothing writes into a loss
        # after backward): flush() stacks them, which saves an operation every step.
        self._losses.append(loss.detach() if loss is not None else None)
        record, detail = self._record_next, self._detail_next
        self.steps += 1
        self._record_next = self.every > 0 and self.steps % self.every == 0
        self._detail_next = self.detail_every > 0 and self.steps % self.detail_every == 0
        if record or self._clip_kind is not None:
            parameters = self._parameters
            if parameters[0].device != self._device:
                raise RuntimeError(
                    f"GradientMonitor was created for {self._device} but the model is now on "
                    f"{parameters[0].device}: create the monitor after model.to(device)"
                )
            grads = [grad for p in parameters if (grad := p.grad) is not None]
            record = record and bool(grads)  # no gradients (no backward yet): nothing to record
            if grads:
                with torch.no_grad():
                    if record:
                        self._record(row, grads, detail and self._weights)
                    else:
                        self.clipping.clip_(grads)
        detail = detail and record
        activations_recorded = False
        if self._activations is not None:
            if detail:
                activations_recorded = self._activations.write(row)
            else:
                self._activations.discard()
            self._activations.arm(self._detail_next)
        if self._output_gradients is not None:
            if detail:
                self._output_gradients.write(self._output_views[row])
            else:
                self._output_gradients.discard()
            self._output_gradients.arm(self._detail_next)
        self._activations_recorded.append(activations_recorded)
        self._recorded.append(record)
        self._detailed.append(detail)
        self._update_row = row if detail and self._snapshots else None
        if self._inside_update and self._update_row is not None:
            # step() ran inside optimizer.step (a closure optimizer's first evaluation), after
            # the pre-step hook: the weights have not moved yet, so the snapshot is taken now.
            self._before_update(None, None, None)  # type: ignore[arg-type]
        self._row += 1

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

    def _record(self, row: int, grads: list[torch.Tensor], weights: bool) -> None:
        """Gradient norms (and with ``weights`` weight norms) into buffer row ``row``, then
        clipping (and, for value clipping, whether it fired and the norms after it)."""
        parameters = self._parameters
        present = None if len(grads) == len(parameters) else tuple(p.grad is not None for p in parameters)
        tensors = grads + parameters if weights else grads
        if present is None:
            assignment = self._detail_assignment if weights else self._full_assignment
        else:
            assignment = self._layer_norms.assignment(present, weights, with_total=True, with_split=True)
        self._layer_norms(tensors, assignment, (self._norm_views if weights else self._grad_norm_views)[row])
        if self._clip_kind == "norm":
            self.clipping.clip_(grads, self._total_views[row])
        elif self._clip_kind == "value":
            # Fired: some element beyond the threshold (an exact test; norms could not tell a
            # barely clipped element from rounding). aminmax reads each gradient once.
            extremes = torch.stack([value for pair in map(torch.aminmax, grads) for value in pair])
            threshold = self.clipping.threshold
            assert threshold is not None  # value clipping always has one
            self._fired_views[row].copy_(extremes.abs().amax() > threshold)
            self.clipping.clip_(grads)
            self._layer_norms(grads, self._layer_norms.assignment(present), self._after_views[row])

    def _before_update(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        """Optimizer pre-step hook: at a recorded step, copy the weights the update will change."""
        self._inside_update = True
        if self._update_row is None:
            return
        with torch.no_grad():
            torch._foreach_copy_(self._snapshots, self._parameters)
        self._snapshot_row, self._update_row = self._update_row, None

    def _after_update(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        """Optimizer post-step hook: the norm of the update, per layer, into the recorded row."""
        self._inside_update = False
        row = self._snapshot_row
        if row is None:
            return
        self._snapshot_row = None
        with torch.no_grad():
            torch._foreach_sub_(self._snapshots, self._parameters)  # now W_before - W_after
            self._layer_norms(self._snapshots, self._layer_norms.assignment(), self._update_views[row])
        self._updated[row] = True

    def flush(self) -> MonitorHistory:
        """Read the buffered steps back in one transfer and append them to the history."""
        if self._row == 0:
            return self._history
        self._update_row = self._snapshot_row = None  # an update not yet measured is dropped
        given = [loss for loss in self._losses if loss is not None]
        if given:  # the loss column, filled now rather than by a copy inside every step
            try:  # one stack for losses of one shape, () or (1,), as they come
                losses = torch.stack(given).reshape(len(given))
            except RuntimeError:
                losses = torch.stack([loss.reshape(()) for loss in given])
            if len(given) == self._row:
                self._buffer[: self._row, 0] = losses
            else:
                self._buffer[[index for index, loss in enumerate(self._losses) if loss is not None], 0] = losses.to(self._buffer.dtype)
        rows = self._buffer[: self._row].tolist()
        activation_rows = self._activations.read(self._row) if self._activations is not None and any(self._activations_recorded) else []
        for offset, values in enumerate(rows):
            step = self._buffer_first_step + offset
            if self._losses[offset] is not None:
                self._add_loss(step, values[0])
            if self._recorded[offset]:
                self._add_record(step, offset, values, self._detailed[offset])
            if self._activations_recorded[offset]:
                self._add_activations(step, offset, activation_rows[offset])
        self._buffer_first_step += self._row
        self._row = 0
        self._recorded.clear()
        self._detailed.clear()
        self._losses.clear()
        self._activations_recorded.clear()
        self._updated = [False] * self.buffer_steps
        return self._history

    def _add_loss(self, step: int, loss: float) -> None:
        history = self._history
        history.loss_steps.append(step)
        history.losses.append(loss)
        if history.nonfinite is None and not math.isfinite(loss):
            history.nonfinite = NonFinite(step, "loss")

    def _add_record(self, step: int, offset: int, values: list[float], detailed: bool) -> None:
        history, num_layers = self._history, self.num_layers
        norms = values[1 : 1 + num_layers]
        total = values[self._total_column]
        fired: bool | None = None
        if self._clip_kind == "norm":
            coefficient = self.clipping.coefficient(total)
            assert coefficient is not None
            after, total_after, fired = [norm * coefficient for norm in norms], total * coefficient, coefficient < 1.0
        elif self._clip_kind == "value":
            after = values[self._after_column : self._after_column + num_layers]
            total_after, fired = math.sqrt(sum(norm * norm for norm in after)), values[self._fired_column] > 0.5
        else:
            after, total_after = list(norms), total
        history.grad_steps.append(step)
        history.layer_grad_norms.append(norms)
        parts = values[self._split_column : self._weight_column]
        has_weight, has_bias = self._has_part
        history.layer_weight_grad_norms.append([value if here else None for value, here in zip(parts[:num_layers], has_weight)])
        history.layer_bias_grad_norms.append([value if here else None for value, here in zip(parts[num_layers:], has_bias)])
        outputs = values[self._output_column : self._output_column + num_layers] if detailed and self._output_column >= 0 else None
        history.layer_output_grad_norms.append(None if outputs is None else [None if math.isnan(value) else value for value in outputs])
        history.layer_grad_norms_after.append(after)
        history.total_norm_before.append(total)
        history.total_norm_after.append(total_after)
        history.clip_fired.append(fired)
        weights = values[self._weight_column : self._weight_column + num_layers] if self._weights and detailed else None
        history.layer_weight_norms.append(weights)
        updates = values[self._update_column : self._update_column + num_layers] if weights is not None and self._updated[offset] else None
        ratios = None if updates is None else [update / weight if weight != 0 else None for update, weight in zip(updates, weights or [])]
        history.layer_update_ratios.append(ratios)
        if history.nonfinite is None:
            # Within a step: the loss (checked first), then the gradients, then the weights
            # (as the step began, and as the update left them).
            bad = [index for index, norm in enumerate(norms) if not math.isfinite(norm)]
            if bad:
                history.nonfinite = NonFinite(step, "gradient", self.layer_names[max(bad)])
                return
            weight_values = (weights or []) + (updates or [])
            bad = [index % num_layers for index, value in enumerate(weight_values) if not math.isfinite(value)]
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
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
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
