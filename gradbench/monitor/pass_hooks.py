"""Hooks registered only for the passes that record: forward hooks on some modules and a
forward pre-hook on the model that marks where each forward pass begins.

A registered hook costs every forward pass a Python call per module, so the monitor's
recorders (activation statistics, back-propagated gradients) register theirs only for the
forward passes of detailed steps (``arm(True)`` before one, ``arm(False)`` after).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

__all__ = ["PassHooks", "BATCHED_ELEMENTS"]

# What the hooks receive (a module's output, the gradient at it) is kept until the step's record,
# where one computation serves all of them (a stack of outputs of one shape, one fused norm of
# gradients), up to this many elements: a small tensor's statistics cost their operations' fixed
# overhead, a dozen per site. A larger one is measured as it comes: its operations are bound by
# memory traffic, and keeping it would hold its memory through the backward pass.
BATCHED_ELEMENTS = 1 << 16


class PassHooks:
    """``on_output(index, module, args, output)`` after each watched module's forward, and
    ``on_start()`` at the beginning of each forward pass with gradients (evaluation under
    ``torch.no_grad`` is not a pass to record), while armed.

    Args:
        model: The model whose forward passes are watched.
        modules: The modules whose outputs are passed to ``on_output`` (with their index).
    """

    def __init__(self, model: nn.Module, modules: list[nn.Module], on_output: Callable[[int, nn.Module, Any, Any], None], on_start: Callable[[], None]) -> None:
        self._model = model
        self._modules = modules
        self._on_output = on_output
        self._on_start = on_start
        self._handles: list[Any] = []

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self, on: bool) -> None:
        """Register the hooks (``on``) or remove them."""
        if on == self.armed or not self._modules:
            return
        if on:
            self._handles = [module.register_forward_hook(partial(self._on_output, index)) for index, module in enumerate(self._modules)]
            self._handles.append(self._model.register_forward_pre_hook(self._start))
        else:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def _start(self, module: nn.Module, args: Any) -> None:
        if torch.is_grad_enabled():
            self._on_start()
