"""A model's layers, and the L2 norm per layer of tensors matching its parameters, on the device.

A *layer* is a module that owns trainable parameters directly (``layers.3`` of a Sequential,
``conv1``, a BatchNorm); its norm is the L2 norm of all its own parameters' tensors together.
Its *bias* part is its parameters named ``bias*`` (``bias``, ``bias_ih_l0``), its *weight* part
all the others (``weight``, ``weight_hh_l0``, a norm layer's scale), so that a weight-gradient
comparison between layers is not mixed with the biases'.
``LayerNorms`` computes those norms for gradients, weights or weight updates in four device
operations: one fused ``_foreach_norm`` over the tensors, a stack, a gather, and one
``vector_norm`` that squares, sums and takes the root in float64; the same ``vector_norm`` can
also give the global norm of the gradients (one more row of the gather), which norm clipping
needs, so that clipping with per-layer norms costs one operation more than clipping alone. Few operations matter: right
after a backward pass the CPU's caches are cold and each small operation costs 10-20 us there.

Per-tensor norms are computed in the tensors' dtype, as ``clip_grad_norm_`` computes them (a
float32 norm above 3.4e38 is inf); the per-layer combination is in float64 (float32 on MPS,
which has no float64), so that combining large finite norms does not overflow.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_layers", "layer_modules", "LayerNorms"]


def layer_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[tuple[str, nn.Parameter]]]]:
    """The model's layers: (module name, the module, its own trainable parameters with their
    names), in registration order.

    A parameter shared by several modules (tied weights) belongs to the first one only, so its
    gradient is counted once, as ``clip_grad_norm_`` counts it.
    """
    layers = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        own = [(leaf, p) for leaf, p in module.named_parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for _, p in own)
        if own:
            layers.append((name or type(module).__name__, module, own))
    return layers


def model_layers(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The model's layers: (module name, its own trainable parameters), in registration order
    (``layer_modules`` without the modules and the parameters' names)."""
    return [(name, [p for _, p in own]) for name, _, own in layer_modules(model)]


def is_bias(parameter_name: str) -> bool:
    """A bias, by its name within its module (``bias``, ``bias_ih_l0``)."""
    return parameter_name.startswith("bias")


class LayerNorms:
    """Per-layer L2 norms of tensors that match a model's parameters.

    Args:
        layer_of_parameter: For each parameter (in order), the index of its layer.
        num_layers: The number of layers.
        device: Where the tensors live.
        dtypes: The parameters' dtypes (a zero of each is allocated now, not inside a step).
        bias_parameters: For each parameter, whether it is a bias (default: none is).
    """

    def __init__(
        self, layer_of_parameter: list[int], num_layers: int, device: torch.device, dtypes: set[torch.dtype], bias_parameters: list[bool] | None = None
    ) -> None:
        self.layer_of_parameter = layer_of_parameter
        self.bias_parameters = bias_parameters or [False] * len(layer_of_parameter)
        self.num_layers = num_layers
        self.device = device
        self.accumulate_dtype = torch.float32 if device.type == "mps" else torch.float64
        self._zeros = {dtype: torch.zeros((), dtype=dtype, device=device) for dtype in dtypes}
        self._cache: dict[tuple[tuple[bool, ...] | None, bool, bool, bool], torch.Tensor] = {}

    def assignment(self, present: tuple[bool, ...] | None = None, with_weights: bool = False, with_total: bool = False, with_split: bool = False) -> torch.Tensor:
        """[rows, width] indices into the stacked per-tensor norms (the tensors given, then
        one zero), padded with the zero's index: one row per layer, in the order
        [gradient layers..., global gradient norm (with_total), gradient layers' weight parts...
        and bias parts... (with_split), weight layers... (with_weights)].

        Args:
            present: Which parameters the tensors stand for (``None``: all of them, in order);
                gradients can be missing for some parameters.
            with_weights: The tensors are the gradients followed by all the weights.
            with_total: Add a row of every gradient: their global norm.
            with_split: Add a row per layer of its weight parameters' gradients, then one per
                layer of its biases' (a layer without biases: the zero).

        A gather and a row norm rather than ``index_add_``, whose CUDA kernel adds with atomics
        in no fixed order (norms, and so norm clipping, would differ from run to run), and
        rather than a 0/1 matrix product, which would spread one layer's NaN to every layer.
        The index tensor is built once per ``present`` pattern: its host-to-device copy would
        synchronise, so the common patterns are built before the first step.
        """
        key = (present, with_weights, with_total, with_split)
        assignment = self._cache.get(key)
        if assignment is None:
            flags = present if present is not None else (True,) * len(self.layer_of_parameter)
            gradient_layers = [layer for layer, here in zip(self.layer_of_parameter, flags) if here]
            gradient_biases = [bias for bias, here in zip(self.bias_parameters, flags) if here]
            members: list[list[int]] = [[] for _ in range(self.num_layers)]
            for position, layer in enumerate(gradient_layers):
                members[layer].append(position)
            if with_total:
                members.append(list(range(len(gradient_layers))))
            if with_split:
                parts: list[list[int]] = [[] for _ in range(2 * self.num_layers)]
                for position, (layer, bias) in enumerate(zip(gradient_layers, gradient_biases)):
                    parts[layer + (self.num_layers if bias else 0)].append(position)
                members += parts
            if with_weights:
                weights: list[list[int]] = [[] for _ in range(self.num_layers)]
                for position, layer in enumerate(self.layer_of_parameter):
                    weights[layer].append(len(gradient_layers) + position)
                members += weights
            padding = len(gradient_layers) + (len(self.layer_of_parameter) if with_weights else 0)
            width = max(1, max(len(m) for m in members))
            rows = [m + [padding] * (width - len(m)) for m in members]
            assignment = torch.tensor(rows, dtype=torch.long).to(self.device)
            self._cache[key] = assignment
        return assignment

    def __call__(self, tensors: list[torch.Tensor], assignment: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the layer norms of ``tensors`` (grouped by ``assignment``) into ``out``."""
        norms = torch._foreach_norm(tensors)
        zero = self._zeros.get(norms[0].dtype)
        if zero is None:  # gradients in another dtype than their parameters: allocated once
            zero = self._zeros[norms[0].dtype] = torch.zeros((), dtype=norms[0].dtype, device=self.device)
        return torch.linalg.vector_norm(torch.stack([*norms, zero]).take(assignment), dim=1, dtype=self.accumulate_dtype, out=out)
