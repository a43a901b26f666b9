"""Back-propagated gradients: the norm of the loss's gradient with respect to module outputs.

The parameter gradients say how much each layer's weights move; Glorot & Bengio's vanishing
gradient is the *back-propagated* one, ``dL/dz`` for a layer's output ``z``, whose size at each
layer is what the backward pass carries down. ``OutputGradients`` measures it with tensor hooks:
a forward hook on each watched module registers a hook on the module's output tensor, which
receives ``dL/dz`` during the backward pass and computes its L2 norm (over the whole batch:
examples x units), kept on the device as it is. A module called several times in one forward
pass (a shared layer) gets one norm per call, combined at collection, so its norm is that of all
its outputs' gradients together.

For an affine layer (``Linear``, a convolution) the output is the *pre-activation*; the
activation modules' outputs are the layers' outputs in Glorot & Bengio's sense (their
``ActivationRecorder`` sites record those, with this class's hooks). The hooks are registered
only around the forward passes of detailed steps, as the activation statistics' are; nothing is
read back before the monitor's flush.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010, Sections 4.2 and 4.3 (back-propagated gradients).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import nn

from gradbench.monitor.layer_norms import combined_norm, grouped_norms, tensor_norm
from gradbench.monitor.pass_hooks import BATCHED_ELEMENTS, PassHooks

__all__ = ["OutputGradients", "first_tensor"]


def first_tensor(output: Any) -> torch.Tensor | None:
    """A module's output tensor: the output itself, or the first tensor of a tuple (an RNN
    returns ``(outputs, h_n)``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, torch.Tensor)), None)
    return None


class OutputGradients:
    """Norms of the loss gradient with respect to the outputs of ``modules``, one value each.

    Each forward pass with gradients starts the sums again (a closure optimizer evaluates the
    loss several times a step; the first evaluation, the one the monitor records, is kept).

    Args:
        model: The model (its forward pre-hook marks where a forward pass begins).
        modules: The modules whose outputs to watch.
        device: Where the norms are computed (and the NaN of an output without a gradient).
    """

    def __init__(self, model: nn.Module, modules: list[nn.Module], device: torch.device) -> None:
        self._modules = modules
        # Each output's gradients as the tensor hooks receive them (one per backward pass through
        # the output, combined at collection): a small one kept for one fused norm of all of them
        # at collection, a large one's norm computed as it comes (keeping it would hold its
        # memory through the backward pass).
        self._grads: list[list[torch.Tensor]] = [[] for _ in modules]
        self._norms: list[list[torch.Tensor]] = [[] for _ in modules]
        self._nan = torch.full((), math.nan, device=device)
        self._hooks = PassHooks(model, modules, self._forward, self.discard)

    @property
    def armed(self) -> bool:
        return self._hooks.armed

    def arm(self, on: bool) -> None:
        """Register the forward hooks (``on``) or remove them."""
        self._hooks.arm(on)

    def _forward(self, index: int, module: nn.Module, args: Any, output: Any) -> None:
        tensor = first_tensor(output)
        if torch.is_grad_enabled() and tensor is not None and tensor.requires_grad:
            tensor.register_hook(partial(self._backward, index))

    def _backward(self, index: int, grad: torch.Tensor) -> None:
        if grad.numel() <= BATCHED_ELEMENTS:
            self._grads[index].append(grad)
        else:
            self._norms[index].append(tensor_norm(grad))

    def collect(self) -> torch.Tensor:
        """The norms since the last collection, one per module (NaN for a module whose output
        got no gradient; several backward passes combined), then start again."""
        if any(self._grads):
            for computed, norms in zip(self._norms, grouped_norms(self._grads)):
                computed += norms
        combined = [combined_norm(norms, self._nan) for norms in self._norms]
        self.discard()
        return torch.stack(combined)

    def discard(self) -> None:
        """Forget what was kept and computed (a step that records nothing)."""
        for kept, norms in zip(self._grads, self._norms):
            kept.clear()
            norms.clear()

    def close(self) -> None:
        self.arm(False)
