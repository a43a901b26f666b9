"""Gradient clipping as small transforms: ``none``, ``norm:C`` and ``value:C``.

A clip is written ``kind:threshold`` on the command line and in suite files. Each kind clips a
list of gradients in place given the global L2 norm *before* clipping (which the gradient monitor
has already computed at the steps it records, so it is never computed twice). ``apply`` also
returns the global norm *after* clipping; ``clip_`` does not, so a step that records nothing
pays for the clipping alone (for ``value:C`` the norm after would be a second pass over the
gradients).

``norm:C`` matches ``torch.nn.utils.clip_grad_norm_``: the gradients are scaled by
``min(1, C / (norm + 1e-6))``. Like torch, it multiplies by the clamped coefficient instead of
testing ``if coefficient < 1``, which would force a device-to-host synchronisation every step.

The transforms import torch when they run, not when this module is imported, so listing the
clips and parsing ``norm:C`` need no torch (``none`` never imports it).

References:
    Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks",
    ICML 2013, https://arxiv.org/abs/1211.5063 (clipping by norm).
    Mikolov, "Statistical Language Models Based on Neural Networks", 2012 (clipping by value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gradbench.axes.registry import Registry
from gradbench.axes.specs import shown

if TYPE_CHECKING:
    import torch

__all__ = ["Clipping", "CLIPS", "parse_clipping", "list_clips", "global_norm"]

# (gradients, threshold, norm before) -> norm after; gradients are clipped in place.
ClipTransform = Callable[[Sequence["torch.Tensor"], float, "torch.Tensor"], "torch.Tensor"]
# (gradients, threshold, norm before or None) -> anything (ignored); gradients are clipped in place.
ClipInPlace = Callable[[Sequence["torch.Tensor"], float, "torch.Tensor | None"], object]


@dataclass(frozen=True)
class ClipKind:
    """One clipping kind.

    Attributes:
        name: Registry name.
        transform: Clips in place and returns the global norm after (``None``: no clipping).
        clip_: Clips in place and returns nothing.
        needs_norm: Whether clipping needs the global norm before (``norm`` does, ``value`` not).
        description: One line for ``gradbench list clips``.
    """

    name: str
    transform: ClipTransform | None
    clip_: ClipInPlace | None
    needs_norm: bool
    description: str


CLIPS: Registry[ClipKind] = Registry("clip")


def global_norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, as a device tensor (no synchronisation)."""
    import torch  # already imported by whoever made the gradients: a dictionary look-up

    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads))))


def _scale_by_norm_(grads: Sequence[torch.Tensor], max_norm: float, norm_before: torch.Tensor | None) -> torch.Tensor:
    """Scale ``grads`` by ``min(1, C / (norm + 1e-6))`` in place; returns the coefficient."""
    import torch

    assert norm_before is not None
    coefficient = torch.clamp(max_norm / (norm_before + 1e-6), max=1.0)
    torch._foreach_mul_(list(grads), coefficient.to(grads[0].dtype))
    return coefficient


def _clip_by_norm(grads: Sequence[torch.Tensor], max_norm: float, norm_before: torch.Tensor) -> torch.Tensor:
    return norm_before * _scale_by_norm_(grads, max_norm, norm_before)


def _clamp_by_value_(grads: Sequence[torch.Tensor], clip_value: float, norm_before: torch.Tensor | None = None) -> None:
    import torch

    torch._foreach_clamp_min_(list(grads), -clip_value)
    torch._foreach_clamp_max_(list(grads), clip_value)


def _clip_by_value(grads: Sequence[torch.Tensor], clip_value: float, norm_before: torch.Tensor) -> torch.Tensor:
    _clamp_by_value_(grads, clip_value)
    return global_norm(grads).to(norm_before.dtype)


CLIPS.register("none", ClipKind("none", None, None, False, "no clipping"))
CLIPS.register(
    "norm",
    ClipKind("norm", _clip_by_norm, _scale_by_norm_, True, "norm:C scales all gradients so their global L2 norm is at most C (Pascanu et al. 2013)"),
)
CLIPS.register("value", ClipKind("value", _clip_by_value, _clamp_by_value_, False, "value:C clamps every gradient element to [-C, C]"))


def list_clips(pattern: str = "*") -> list[str]:
    return CLIPS.names(pattern)


@dataclass(frozen=True)
class Clipping:
    """A clip kind with its threshold; ``Clipping("none")`` clips nothing."""

    kind: str = "none"
    threshold: float | None = None

    def __post_init__(self) -> None:
        CLIPS.get(self.kind)
        if self.kind == "none":
            if self.threshold is not None:
                raise ValueError(f"clip 'none' takes no threshold, got {self.threshold!r}")
        elif not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"invalid clip threshold {self.kind}:{self.threshold}: must be a positive number")

    @property
    def label(self) -> str:
        """``kind:threshold`` with the threshold exactly (``repr``), ``norm:1`` for 1.0."""
        if self.kind == "none":
            return "none"
        text = repr(float(self.threshold))  # type: ignore[arg-type]
        return f"{self.kind}:{text[:-2] if text.endswith('.0') else text}"

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def apply(self, grads: Sequence[torch.Tensor], norm_before: torch.Tensor | None = None) -> torch.Tensor:
        """Clip ``grads`` in place and return their global norm after clipping.

        Args:
            grads: The gradients (non-empty), all on one device.
            norm_before: Their global L2 norm if already known; computed otherwise.
        """
        if norm_before is None:
            norm_before = global_norm(grads)
        transform = CLIPS.get(self.kind).transform
        if transform is None or not grads:
            return norm_before
        assert self.threshold is not None
        return transform(grads, float(self.threshold), norm_before)

    def clip_(self, grads: Sequence[torch.Tensor], norm_before: torch.Tensor | None = None) -> None:
        """Clip ``grads`` in place without computing their norm after.

        Args:
            grads: The gradients, all on one device.
            norm_before: Their global L2 norm if already known; computed only where the kind
                needs it (``norm``).
        """
        kind = CLIPS.get(self.kind)
        if kind.clip_ is None or not grads:
            return
        if norm_before is None and kind.needs_norm:
            norm_before = global_norm(grads)
        assert self.threshold is not None
        kind.clip_(grads, float(self.threshold), norm_before)

    def coefficient(self, norm_before: float) -> float | None:
        """The factor ``norm:C`` scales every gradient by, ``min(1, C / (norm + 1e-6))``, computed
        on the host from a recorded norm exactly as the device computes it; ``None`` for the
        other kinds, which do not scale."""
        if self.kind != "norm":
            return None
        assert self.threshold is not None
        if math.isnan(norm_before):
            return math.nan  # as torch.clamp(NaN) is NaN (Python's min would return 1.0)
        return min(1.0, float(self.threshold) / (norm_before + 1e-6))


def parse_clipping(text: str) -> Clipping:
    """Parse ``none``, ``norm:C`` or ``value:C``.

    Raises:
        ValueError: naming the bad text and the valid forms.
    """
    kind, colon, raw = text.strip().partition(":")
    forms = "none, norm:C, value:C (C a positive number)"
    if kind not in CLIPS:
        raise ValueError(CLIPS.unknown_message(kind) + f" in {shown(text)}; forms: {forms}")
    if kind == "none":
        if colon:
            raise ValueError(f"invalid clip {shown(text)}: 'none' takes no threshold; forms: {forms}")
        return Clipping()
    try:
        threshold = float(raw)
    except ValueError:
        raise ValueError(f"invalid clip {shown(text)}: threshold {shown(raw)} is not a number; forms: {forms}") from None
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"invalid clip {shown(text)}: threshold must be a positive number; forms: {forms}")
    return Clipping(kind, threshold)
