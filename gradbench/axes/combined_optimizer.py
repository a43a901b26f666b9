"""One ``torch.optim.Optimizer`` made of several, each over its own parameters (Muon and its
AdamW companion).

The runner, the monitor's step hooks and the learning-rate schedulers all expect one optimizer.
``CombinedOptimizer`` is one: its ``param_groups`` are the inner optimizers' own group dicts
(so a scheduler that sets ``group["lr"]`` sets it where the inner optimizer reads it), its
``step`` steps each inner optimizer in turn, and its ``state`` reads through to theirs. Its
step hooks run once around all of them, so the monitor's update ratios cover every parameter.

Imports torch: imported only when an optimizer is built.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["CombinedOptimizer"]


class _JointState(ChainMap):
    """The inner optimizers' states read as one. A plain ``ChainMap`` looks a parameter up in
    each map in turn with ``map[key]``: the first inner state, a ``defaultdict``, then creates
    an empty entry for a parameter it does not own, which hides the owner's real state
    (the companion's moments vanished from the state-size count and from ``state_dict``)."""

    def __getitem__(self, key: object) -> object:
        for mapping in self.maps:
            if key in mapping:
                return mapping[key]
        raise KeyError(key)

    def clear(self) -> None:
        """Empty every inner state (``ChainMap.clear`` empties only the first)."""
        for mapping in self.maps:
            mapping.clear()


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped together.

    Args:
        optimizers: The inner optimizers; no parameter may be in two of them.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        if not optimizers:
            raise ValueError("CombinedOptimizer needs at least one optimizer")
        self.optimizers = list(optimizers)
        # The inner group dicts themselves: add_param_group keeps them (and refuses a parameter
        # that two groups share), so a scheduler's writes reach the inner optimizers.
        super().__init__([group for optimizer in self.optimizers for group in optimizer.param_groups], defaults={})
        self._join()

    def _join(self) -> None:
        """The inner group dicts and states, as they are now."""
        self.param_groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]
        self.state = _JointState(*(optimizer.state for optimizer in self.optimizers))  # type: ignore[assignment]

    def state_dict(self) -> dict[str, Any]:
        """Each inner optimizer's own state dict, in order."""
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Give each inner optimizer its part, then share their (new) groups and states again:
        torch's own would replace this optimizer's groups and leave the inner ones behind."""
        for optimizer, part in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(part)
        self._join()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def __repr__(self) -> str:
        return "CombinedOptimizer(" + ", ".join(type(optimizer).__name__ for optimizer in self.optimizers) + ")"
