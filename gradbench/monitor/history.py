"""What the gradient monitor hands back: its records on the host, and where NaN/Inf began.

Records are aligned lists: ``grad_steps[i]`` is the step of ``layer_grad_norms[i]``,
``layer_weight_norms[i]``, ``clip_fired[i]`` and so on; ``activation_steps[j]`` is the step of
``dead_fraction[j]``, ``activation_mean[j]``, ... Steps count from 1 (step k is the k-th call of
``GradientMonitor.step``). ``None`` marks a value that was not recorded (a statistic switched
off, an optimizer step the monitor did not see, a unit kind the statistic does not apply to).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NonFinite", "ActivationSite", "MonitorHistory", "QUANTITIES", "first_last_ratio", "finite_ratios", "window", "WINDOW"]

# The order in which the quantities of one step are computed: the loss (forward pass), the
# gradients (backward pass), the loss scale (a loss scaler's verdict on them), then the weights
# (the optimizer's update).
QUANTITIES = ("loss", "gradient", "loss_scale", "weight")
WINDOW = 0.1  # early and late windows: the first and last tenth of the records


@dataclass(frozen=True)
class NonFinite:
    """Where the first NaN or Inf appeared.

    Attributes:
        step: The step, counting ``step()`` calls from 1.
        quantity: ``"loss"``, ``"gradient"``, ``"loss_scale"`` or ``"weight"``, in the order a
            step computes them. ``loss_scale``: a loss scaler skipped the step for non-finite
            gradients at a scale of ``MIN_LOSS_SCALE`` (1) or less, where the gradients overflow
            at their true size (a skip at a higher scale is routine, not divergence).
        layer: For a gradient, the layer nearest the output whose gradient norm is not finite:
            back-propagation runs from the output down, so that is where it began. For the
            weights, the first layer (in model order) whose update or weight norm is not finite.
    """

    step: int
    quantity: str
    layer: str | None = None


@dataclass(frozen=True)
class ActivationSite:
    """One call of an activation module in the forward pass.

    Attributes:
        name: The module's name; a module called several times in one forward pass gives one
            site per call, ``name``, ``name#2``, ``name#3``, ...
        module: The module's class name (``ReLU``, ``Sigmoid``).
        kind: ``"rectifier"`` (units can die) or ``"saturating"`` (units can saturate).
        units: Units per example: the output's elements without the batch (first) dimension.
    """

    name: str
    module: str
    kind: str
    units: int


@dataclass
class MonitorHistory:
    """Everything the monitor recorded, on the host.

    Attributes:
        layer_names: Layer names in model order (first = nearest the input).
        loss_steps, losses: The loss at every step it was given.
        grad_steps: The recorded steps.
        layer_grad_norms: One row per recorded step, one column per layer: the gradient's L2
            norm before clipping.
        layer_grad_norms_after: The same after clipping (equal to the above without clipping).
        layer_weight_grad_norms, layer_bias_grad_norms: The gradient norm before clipping of
            each layer's weights alone and of its biases alone (``None`` for a layer without
            that part): a comparison of weight gradients between layers is not mixed with
            the biases'.
        layer_output_grad_norms: At detailed steps, the L2 norm of the loss's gradient with
            respect to each layer's output (for an affine layer, the pre-activation; the
            back-propagated gradient of Glorot & Bengio); ``None`` rows at other steps, ``None``
            entries for a layer whose output got no gradient.
        total_norm_before, total_norm_after: Global gradient norm before and after clipping.
        clip_fired: Whether clipping changed the gradients at each recorded step (``None``
            without clipping).
        layer_weight_norms: The weights' L2 norm per layer as the step began (``None`` rows
            at steps that are not detailed, or when weight statistics are off).
        layer_update_ratios: ``||W_after - W_before|| / ||W_before||`` per layer over the
            optimizer step that followed (``None`` rows when the monitor has no optimizer or did
            not see its step; ``None`` entries for a layer whose weights were zero).
        activation_sites: The activation calls observed, in forward order.
        activation_steps: Steps at which activation statistics were recorded.
        dead_fraction: Per site, the fraction of units whose output was exactly zero for every
            example of the batch (rectifiers; ``None`` for saturating units).
        saturated_fraction: Per site, the fraction of units whose slope was below
            ``SATURATION_SLOPE`` times its peak for every example (saturating units; ``None``
            for rectifiers).
        pinned_fraction: Per site, the fraction of its output values (every example and unit)
            in the outer tenth of the activation's range at either end (saturating units;
            ``None`` for rectifiers).
        activation_mean, activation_std: Per site, mean and standard deviation of all its
            output values (every example and unit).
        activation_output_grad_norms: Per site, the L2 norm of the loss's gradient with respect
            to its output: the back-propagated gradient at the layer's output.
        scale_steps, loss_scales: Under a loss scaler (``fp16``), the scale each step's loss
            was multiplied by, every step.
        skipped_steps: The steps the loss scaler skipped (non-finite gradients after scaling:
            no update, the scale lowered). Not divergence, unless at a scale of 1 or less.
        nonfinite: The first non-finite loss, gradient or weight, if any.
    """

    layer_names: list[str]
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_steps: list[int] = field(default_factory=list)
    layer_grad_norms: list[list[float]] = field(default_factory=list)
    layer_grad_norms_after: list[list[float]] = field(default_factory=list)
    layer_weight_grad_norms: list[list[float | None]] = field(default_factory=list)
    layer_bias_grad_norms: list[list[float | None]] = field(default_factory=list)
    layer_output_grad_norms: list[list[float | None] | None] = field(default_factory=list)
    total_norm_before: list[float] = field(default_factory=list)
    total_norm_after: list[float] = field(default_factory=list)
    clip_fired: list[bool | None] = field(default_factory=list)
    layer_weight_norms: list[list[float] | None] = field(default_factory=list)
    layer_update_ratios: list[list[float | None] | None] = field(default_factory=list)
    activation_sites: list[ActivationSite] = field(default_factory=list)
    activation_steps: list[int] = field(default_factory=list)
    dead_fraction: list[list[float | None]] = field(default_factory=list)
    saturated_fraction: list[list[float | None]] = field(default_factory=list)
    pinned_fraction: list[list[float | None]] = field(default_factory=list)
    activation_mean: list[list[float]] = field(default_factory=list)
    activation_std: list[list[float]] = field(default_factory=list)
    activation_output_grad_norms: list[list[float | None]] = field(default_factory=list)
    scale_steps: list[int] = field(default_factory=list)
    loss_scales: list[float] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)
    nonfinite: NonFinite | None = None

    @property
    def clip_fired_fraction(self) -> float | None:
        """The fraction of recorded steps at which clipping changed the gradients (``None``
        without clipping or records)."""
        known = [fired for fired in self.clip_fired if fired is not None]
        return sum(known) / len(known) if known else None

    def truncate(self, last_step: int) -> None:
        """Drop every record after ``last_step`` (a diverged run keeps its records up to and
        including the first non-finite step)."""
        keep_losses = sum(1 for step in self.loss_steps if step <= last_step)
        del self.loss_steps[keep_losses:], self.losses[keep_losses:]
        keep_scales = sum(1 for step in self.scale_steps if step <= last_step)
        del self.scale_steps[keep_scales:], self.loss_scales[keep_scales:]
        self.skipped_steps[:] = [step for step in self.skipped_steps if step <= last_step]
        keep = sum(1 for step in self.grad_steps if step <= last_step)
        per_record: tuple[list[Any], ...] = (
            self.grad_steps, self.layer_grad_norms, self.layer_grad_norms_after, self.total_norm_before,
            self.total_norm_after, self.clip_fired, self.layer_weight_norms, self.layer_update_ratios,
            self.layer_weight_grad_norms, self.layer_bias_grad_norms, self.layer_output_grad_norms,
        )
        for records in per_record:
            del records[keep:]
        keep = sum(1 for step in self.activation_steps if step <= last_step)
        activation_records: tuple[list[Any], ...] = (
            self.activation_steps, self.dead_fraction, self.saturated_fraction, self.pinned_fraction, self.activation_mean,
            self.activation_std, self.activation_output_grad_norms,
        )
        for records in activation_records:
            del records[keep:]


def window(count: int, late: bool = False) -> slice:
    """The first (or last) tenth of ``count`` records, at least one."""
    size = max(1, math.ceil(count * WINDOW))
    return slice(count - size, count) if late else slice(0, size)


def finite_ratios(pairs: Sequence[tuple[float, float]]) -> list[float]:
    """``first / last`` of each pair where both are finite and ``last`` is positive."""
    return [first / last for first, last in pairs if last > 0 and math.isfinite(first) and math.isfinite(last)]


def first_last_ratio(layer_grad_norms: Sequence[Sequence[float]]) -> float | None:
    """``||grad first layer|| / ||grad last layer||`` early in training: the median over the
    first tenth of the recorded steps (``None`` for fewer than two layers or no usable record).

    Early, because that is when vanishing gradients decide whether the lower layers learn;
    later a run may sit on a plateau where every gradient is tiny and the ratio says little.
    """
    rows = [row for row in layer_grad_norms if len(row) > 1]
    ratios = finite_ratios([(row[0], row[-1]) for row in rows[window(len(rows))]])
    return statistics.median(ratios) if ratios else None
