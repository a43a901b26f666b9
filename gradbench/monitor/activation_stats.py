"""Activation statistics from forward hooks: dead units, saturated units, mean and std.

Every activation module of the model is watched: the classes registered in
``gradbench.axes.activations`` and torch's own activation modules in any user model. A *unit* is one
element of an example's output (a feature of a linear layer; one channel at one position of a
convolution); the first dimension of the output is taken as the batch. At a recorded step:

- a rectifier's unit is **dead** when its output is exactly zero for every example in the batch
  (it passes back no gradient at all for this batch);
- a saturating unit (sigmoid, tanh, hardtanh, hardsigmoid, softsign) is **saturated** when its
  slope is below ``SATURATION_SLOPE`` (a tenth) of the activation's peak slope for every example
  in the batch. The slope is read from the output: sigmoid ``4 y (1 - y)``, tanh ``1 - y^2``,
  softsign ``(1 - |y|)^2`` (relative to their peaks 1/4, 1, 1), hardtanh and hardsigmoid 0 at
  their bounds and 1 inside. For sigmoid that is ``y < 0.026`` or ``y > 0.974``, for tanh
  ``|y| > 0.949``;
- a saturating unit's output is **pinned** when it lies in the outer tenth of the activation's
  range at either end (sigmoid and hardsigmoid below 0.1 or above 0.9, tanh and softsign beyond
  0.8 in size, hardtanh within a tenth of its range of a bound): the pinned fraction is over all
  the output's values, every example and unit, so it catches a layer that sits near one end for
  most examples (Glorot & Bengio's top sigmoid layer, mean 0.03) where no unit is saturated for
  *every* example;
- the mean and the (population) standard deviation are over all the output's values;
- the **output gradient** is the L2 norm of the loss's gradient with respect to the output (the
  back-propagated gradient at the layer's output), from a tensor hook
  (``gradbench.monitor.output_gradients``).

The hooks are registered only around the forward passes of recorded steps (armed by
``GradientMonitor.step`` for the next step), so the other steps run the model without hooks.
Forward passes without gradients (evaluation under ``torch.no_grad``) are ignored, and each new
forward pass with gradients replaces the previous one's records (gradient accumulation: the last
micro-batch is recorded). Functional activations (``torch.relu(x)`` inside ``forward``) are
invisible to hooks. The statistics are computed on the device and stay there until the
monitor's read-back: a large output's as the hook runs, a small one's (up to ``BATCHED_ELEMENTS``)
at the step's record, together with the other sites of its shape and kind (one stack, a dozen
operations for all of them). A small output is kept as it is where torch's backward pass reads
it (ReLU, sigmoid, tanh: an in-place change after the hook would fail that pass), and copied at
the hook otherwise (a later ``Dropout(inplace=True)`` or ``x += skip`` may change it); a kept
output found changed all the same reads as NaN, with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import torch
from torch import nn

from gradbench.axes.activations import ACTIVATIONS
from gradbench.monitor.history import ActivationSite
from gradbench.monitor.layer_norms import combined_norm, grouped_norms, tensor_norm
from gradbench.monitor.pass_hooks import BATCHED_ELEMENTS, PassHooks

__all__ = ["SATURATION_SLOPE", "PINNED_BAND", "ActivationRecorder", "ActivationRecord", "activation_kind", "site_label"]

SATURATION_SLOPE = 0.1

# A counter maps an output to the number of dead or saturated units (``counts_stuck``) or of
# the units that are neither (not; the host takes the complement). ``sites=True``: the output is
# several sites' outputs of one shape stacked (the batch is dimension 1), one count per site.
Counter = Callable[[torch.Tensor, bool], torch.Tensor]

_RECTIFIERS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Hardswish,
)
_NONNEGATIVE = (nn.ReLU, nn.ReLU6, nn.Softplus)  # outputs >= 0: no abs() needed
_SATURATING: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign)
# Their backward pass reads their output, so nothing can change it in place before the record.
_BACKWARD_READS_OUTPUT: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Sigmoid, nn.Tanh)
PINNED_BAND = 0.1  # the outer tenth of the output's range at either end


def _over_batch(values: torch.Tensor, reduce: str, sites: bool) -> torch.Tensor:
    """``amax``/``amin`` over the batch dimension (the first; the second of stacked sites); an
    unbatched output is one example."""
    if not sites and values.dim() < 2:
        return values
    dim = 1 if sites else 0
    return values.amax(dim) if reduce == "max" else values.amin(dim)


def _count(mask: torch.Tensor, sites: bool) -> torch.Tensor:
    """The true elements of ``mask``: in all, or per site (the first dimension) when stacked."""
    return torch.count_nonzero(mask, dim=tuple(range(1, mask.dim()))) if sites else torch.count_nonzero(mask)


def _alive_units(nonnegative: bool, y: torch.Tensor, sites: bool) -> torch.Tensor:
    return _count(_over_batch(y if nonnegative else y.abs(), "max", sites), sites)


def _saturated_sigmoid(y: torch.Tensor, sites: bool) -> torch.Tensor:
    # Relative slope 4 y (1 - y) < s for every example  <=>  max over the batch of y - y^2 < s/4.
    return _count(_over_batch(torch.addcmul(y, y, y, value=-1.0), "max", sites) < SATURATION_SLOPE / 4, sites)


def _saturated_tanh(y: torch.Tensor, sites: bool) -> torch.Tensor:
    # Relative slope 1 - y^2 < s  <=>  y^2 > 1 - s.
    return _count(_over_batch(y.square(), "min", sites) > 1.0 - SATURATION_SLOPE, sites)


def _saturated_softsign(y: torch.Tensor, sites: bool) -> torch.Tensor:
    # Slope 1 / (1 + |x|)^2 = (1 - |y|)^2 < s  <=>  |y| > 1 - sqrt(s).
    return _count(_over_batch(y.abs(), "min", sites) > 1.0 - math.sqrt(SATURATION_SLOPE), sites)


def _inside_units(low: float, high: float, y: torch.Tensor, sites: bool) -> torch.Tensor:
    # Slope 1 strictly inside (low, high), 0 at the bounds (as torch's backward has it).
    inside = torch.logical_and(y > low, y < high)
    return _count(_over_batch(inside, "max", sites), sites)


def _pinned_between(low: float, high: float, y: torch.Tensor, sites: bool) -> torch.Tensor:
    """Outputs within ``PINNED_BAND`` of the range [low, high] of either bound."""
    band = PINNED_BAND * (high - low)
    return _count(torch.logical_or(y < low + band, y > high - band), sites)


def _pinned_symmetric(bound: float, y: torch.Tensor, sites: bool) -> torch.Tensor:
    """Outputs in [-bound, bound] within ``PINNED_BAND`` of the range of either bound."""
    return _count(y.abs() > bound - PINNED_BAND * 2 * bound, sites)


def _pinning(module: nn.Module) -> Callable[[torch.Tensor, bool], torch.Tensor] | None:
    """The pinned-output counter of a saturating module; ``None`` for anything else."""
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return partial(_pinned_between, 0.0, 1.0)
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return partial(_pinned_symmetric, 1.0)
    if isinstance(module, nn.Hardtanh):
        return partial(_pinned_between, float(module.min_val), float(module.max_val))
    return None


def _counter(module: nn.Module) -> tuple[str, Counter | None, bool] | None:
    """(kind, counter, counts_stuck) for an activation module; ``None`` for anything else."""
    if isinstance(module, _RECTIFIERS):
        return "rectifier", partial(_alive_units, isinstance(module, _NONNEGATIVE)), False
    if isinstance(module, nn.Sigmoid):
        return "saturating", _saturated_sigmoid, True
    if isinstance(module, nn.Tanh):
        return "saturating", _saturated_tanh, True
    if isinstance(module, nn.Softsign):
        return "saturating", _saturated_softsign, True
    if isinstance(module, nn.Hardtanh):
        return "saturating", partial(_inside_units, float(module.min_val), float(module.max_val)), False
    if isinstance(module, nn.Hardsigmoid):
        return "saturating", partial(_inside_units, 0.0, 1.0), False
    for _, spec in ACTIVATIONS.items():  # a user-registered class: its kind, but no slope formula
        if type(module) is spec.module_class and spec.kind != "linear":
            return spec.kind, None, True
    return None


def _signature(function: Callable[..., Any] | None) -> object:
    """What makes two counters compute the same thing (sites stack only with their like)."""
    return (function.func, function.args) if isinstance(function, partial) else function


def activation_kind(module: nn.Module) -> str | None:
    """``"rectifier"``, ``"saturating"`` or ``None`` (not an activation the recorder watches)."""
    found = _counter(module)
    return found[0] if found else None


def site_label(name: str, call: int) -> str:
    """An activation site's name: the module's, with ``#k`` for its ``k``-th call (k >= 2) in
    one forward pass (a module used several times)."""
    return name if call == 1 else f"{name}#{call}"


@dataclass(frozen=True)
class ActivationRecord:
    """One detailed step's statistics, one entry per site (``None`` where a statistic does not
    apply to the site's kind, or its output got no gradient)."""

    dead: list[float | None]
    saturated: list[float | None]
    pinned: list[float | None]
    means: list[float]
    stds: list[float]
    output_grad_norms: list[float | None]


@dataclass
class _Observation:
    """One site's output at a detailed step: its statistics as device tensors, computed as the
    output came (a large one) or at ``write`` with the other sites of its shape (``output`` kept
    until then, with its version: an in-place change after the hook would be seen)."""

    module_index: int
    counts_stuck: bool
    units: int
    elements: int
    output: torch.Tensor | None = None
    version: int = 0
    count: torch.Tensor | None = None
    pinned: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    centered_norm: torch.Tensor | None = None
    # The output gradient from a tensor hook (one per backward pass through the output; several
    # are combined at write): a small one kept for one fused norm of all of them at write, a
    # large one's norm computed as it came.
    grads: list[torch.Tensor] = field(default_factory=list)
    grad_norms: list[torch.Tensor] = field(default_factory=list)


def _statistics(observations: list[_Observation], outputs: torch.Tensor, counter: Counter | None, pinning: Callable[[torch.Tensor, bool], torch.Tensor] | None, sites: bool) -> None:
    """Count, pinned count, mean and centred norm of ``outputs`` (one site's, or with ``sites``
    several sites' outputs stacked), into ``observations``."""
    dims = tuple(range(1, outputs.dim())) if sites else None
    mean = outputs.mean(dim=dims) if sites else outputs.mean()
    # ||y - mean|| rather than torch.var_mean, which takes 4x as long on the CPU, or
    # E[y^2] - mean^2, which cancels to noise in float32 for a saturated layer.
    centered = outputs - (mean.reshape(-1, *(1,) * (outputs.dim() - 1)) if sites else mean)
    centered_norm = torch.linalg.vector_norm(centered, dim=dims)
    values = {
        "count": counter(outputs, sites) if counter is not None else None,
        "pinned": pinning(outputs, sites) if pinning is not None else None,
        "mean": mean,
        "centered_norm": centered_norm,
    }
    for name, value in values.items():
        for observation, item in zip(observations, value.unbind() if sites and value is not None else [value]):
            setattr(observation, name, item)


class ActivationRecorder:
    """Forward hooks on a model's activation modules, writing one buffer row per detailed step.

    Args:
        model: The model (its forward pre-hook marks where a forward pass begins).
        buffer_steps: Rows held on the device between read-backs.
    """

    def __init__(self, model: nn.Module, buffer_steps: int) -> None:
        self._watched: list[tuple[str, nn.Module, str, Counter | None, bool]] = []
        self._pinning: list[Callable[[torch.Tensor, bool], torch.Tensor] | None] = []
        for name, module in model.named_modules():
            found = _counter(module)
            if found is not None:
                self._watched.append((name or type(module).__name__, module, *found))
                # ReLU6 is a Hardtanh to torch, but a rectifier here: no pinned fraction.
                self._pinning.append(_pinning(module) if found[0] == "saturating" else None)
        self._copy = [not isinstance(module, _BACKWARD_READS_OUTPUT) for _, module, _, _, _ in self._watched]
        # Sites whose statistics are the same computation: their small outputs stack together.
        self._kinds = [(_signature(counter), _signature(pinning)) for (_, _, _, counter, _), pinning in zip(self._watched, self._pinning)]
        self._buffer_steps = buffer_steps
        self._buffer: torch.Tensor | None = None
        self._pending: list[_Observation] = []
        self._hooks = PassHooks(model, [module for _, module, _, _, _ in self._watched], self._observe, self._restart)
        self._site_keys: list[int] | None = None
        self._observations: list[_Observation] = []  # the first row's, for the sites' layout
        # Per buffer row, each site's (units, elements): the batch may change size from step to step.
        self._shapes: list[list[tuple[int, int]]] = [[] for _ in range(buffer_steps)]
        self.sites: list[ActivationSite] = []
        self._warned = False
        self._warned_in_place = False

    @property
    def armed(self) -> bool:
        return self._hooks.armed

    def arm(self, on: bool) -> None:
        """Register the hooks (``on``) or remove them (``gradbench.monitor.pass_hooks``)."""
        self._hooks.arm(on)

    def _restart(self) -> None:
        """A new forward pass with gradients: the last one's observations are dropped (with
        gradient accumulation the last micro-batch is recorded)."""
        self._pending = []

    def _observe(self, index: int, module: nn.Module, args: Any, output: Any) -> None:
        if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor) or output.numel() == 0:
            return
        y = output.detach()
        elements = y.numel()
        units = elements // y.shape[0] if y.dim() >= 2 else elements  # not y[0]: an operation
        observation = _Observation(index, self._watched[index][4], units, elements)
        if y.dim() >= 2 and elements <= BATCHED_ELEMENTS:
            observation.output = y.clone() if self._copy[index] else y
            observation.version = observation.output._version
        else:
            _statistics([observation], y, self._watched[index][3], self._pinning[index], sites=False)
        if output.requires_grad:
            output.register_hook(partial(self._backward, observation))
        self._pending.append(observation)

    @staticmethod
    def _backward(observation: _Observation, grad: torch.Tensor) -> None:
        if grad.numel() <= BATCHED_ELEMENTS:
            observation.grads.append(grad)
        else:
            observation.grad_norms.append(tensor_norm(grad))

    def _complete(self, pending: list[_Observation]) -> None:
        """The statistics of the kept outputs, one stack and computation per group of sites
        with one shape and kind; then the norms of the kept gradients, one fused operation per
        dtype. A kept output changed in place after its hook all the same has every statistic
        NaN: what it held at the hook is gone."""
        groups: dict[tuple[object, ...], list[_Observation]] = {}
        changed: list[_Observation] = []
        for o in pending:
            if o.output is None:
                continue
            if o.output._version != o.version:
                changed.append(o)
            key = (self._kinds[o.module_index], o.output.shape, o.output.dtype, o.output.device)
            groups.setdefault(key, []).append(o)
        for members in groups.values():
            index = members[0].module_index
            kept = [o.output for o in members if o.output is not None]
            outputs = torch.stack(kept) if len(kept) > 1 else kept[0].unsqueeze(0)
            _statistics(members, outputs, self._watched[index][3], self._pinning[index], sites=True)
            for o in members:
                o.output = None
        for o in changed:
            if not self._warned_in_place:
                warnings.warn(
                    f"activation statistics: the output of {self._watched[o.module_index][0]} was changed in place after the "
                    "activation (an in-place operation later in the forward pass); its statistics are recorded as NaN",
                    stacklevel=4,
                )
                self._warned_in_place = True
            assert o.mean is not None
            nan = torch.full((), math.nan, device=o.mean.device)
            o.mean = o.centered_norm = nan
            o.count = nan if o.count is not None else None
            o.pinned = nan if o.pinned is not None else None
        if any(o.grads for o in pending):
            for o, norms in zip(pending, grouped_norms([o.grads for o in pending])):
                o.grad_norms += norms
                o.grads = []

    def write(self, row: int) -> bool:
        """Store the pending observations in buffer row ``row``; returns whether there were any
        (and they match the sites of the first recorded step)."""
        pending, self._pending = self._pending, []
        if not pending:
            return False
        keys = [observation.module_index for observation in pending]
        if self._site_keys is not None and keys != self._site_keys:
            if not self._warned:
                warnings.warn(
                    "activation statistics: this forward pass called the activation modules in another order or number "
                    "than the first recorded one; its activation statistics are not recorded",
                    stacklevel=3,
                )
                self._warned = True
            return False
        self._complete(pending)
        if self._site_keys is None:
            self._establish_sites(pending)
        assert self._buffer is not None
        self._shapes[row] = [(o.units, o.elements) for o in pending]
        counts = [o.count for o in pending if o.count is not None] + [o.pinned for o in pending if o.pinned is not None]
        buffer_row = self._buffer[row]
        if counts:
            buffer_row[: len(counts)].copy_(torch.stack(counts))
        gradients = [combined_norm(o.grad_norms, self._nan) for o in pending]
        statistics = cast("list[torch.Tensor]", [o.mean for o in pending] + [o.centered_norm for o in pending])
        buffer_row[len(counts) :].copy_(torch.stack(statistics + gradients))
        return True

    def discard(self) -> None:
        """Drop the pending observations (a step that records nothing)."""
        self._pending = []

    def _establish_sites(self, observations: list[_Observation]) -> None:
        self._site_keys = [o.module_index for o in observations]
        self._observations = observations
        calls: dict[int, int] = {}
        for o in observations:
            calls[o.module_index] = calls.get(o.module_index, 0) + 1
            name, module, kind, _, _ = self._watched[o.module_index]
            self.sites.append(ActivationSite(site_label(name, calls[o.module_index]), type(module).__name__, kind, o.units))
        counted = sum(1 for o in observations if o.count is not None) + sum(1 for o in observations if o.pinned is not None)
        width = counted + 3 * len(observations)
        self._buffer = torch.full((self._buffer_steps, width), math.nan, dtype=torch.float64, device=self._device_of(observations))
        self._nan = torch.full((), math.nan, device=self._buffer.device)

    @staticmethod
    def _device_of(observations: list[_Observation]) -> torch.device:
        """Where the statistics were computed (the first site's mean)."""
        mean = observations[0].mean
        assert mean is not None  # computed by write before the sites are established
        return mean.device

    def read(self, rows: int) -> list[list[float]]:
        """The first ``rows`` buffer rows on the host (one transfer)."""
        if self._buffer is None or rows == 0:
            return []
        return self._buffer[:rows].tolist()

    def decode(self, row: int, values: list[float]) -> ActivationRecord:
        """The statistics of buffer row ``row``, whose values ``values`` were read back."""
        dead: list[float | None] = []
        saturated: list[float | None] = []
        pinned: list[float | None] = []
        shapes = self._shapes[row]
        counted = sum(1 for o in self._observations if o.count is not None)
        pinned_counted = sum(1 for o in self._observations if o.pinned is not None)
        sites = len(self._observations)
        position, pinned_position = 0, counted
        for site, observation, (units, elements) in zip(self.sites, self._observations, shapes):
            fraction = None
            if observation.count is not None:
                count = values[position]
                position += 1
                fraction = (count if observation.counts_stuck else units - count) / units
            dead.append(fraction if site.kind == "rectifier" else None)
            saturated.append(fraction if site.kind == "saturating" else None)
            if observation.pinned is not None:
                pinned.append(values[pinned_position] / elements)
                pinned_position += 1
            else:
                pinned.append(None)
        start = counted + pinned_counted
        means = values[start : start + sites]
        stds = [norm / math.sqrt(elements) for norm, (_, elements) in zip(values[start + sites : start + 2 * sites], shapes)]
        gradients = [None if math.isnan(value) else value for value in values[start + 2 * sites : start + 3 * sites]]
        return ActivationRecord(dead, saturated, pinned, means, stds, gradients)

    def close(self) -> None:
        self.arm(False)
        self._pending = []
