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

import torch

__all__ = ["CombinedOptimizer"]


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
        self.state = ChainMap(*(optimizer.state for optimizer in self.optimizers))  # type: ignore[assignment]

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
