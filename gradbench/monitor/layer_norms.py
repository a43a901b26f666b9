"""A model's layers, and the L2 norm per layer of tensors matching its parameters.

A *layer* is a module that owns trainable parameters directly (``layers.3`` of a Sequential,
``conv1``, a BatchNorm); its norm is the L2 norm of all its own parameters' tensors together.
Its *bias* part is its parameters named ``bias*`` (``bias``, ``bias_ih_l0``), its *weight* part
all the others (``weight``, ``weight_hh_l0``, a norm layer's scale), so that a weight-gradient
comparison between layers is not mixed with the biases'.

The device computes one thing per recorded tensor list: the norm of each tensor, in one fused
``_foreach_norm`` (in the tensors' dtype, as ``clip_grad_norm_`` computes them; float32 for
half-precision tensors, whose own dtype would round a norm to three digits). Those per-tensor
norms are read back with the rest of a buffer, and ``LayerNorms`` combines them per layer on the
host, in double precision: each layer's norm, the global norm, and the weight and bias parts. So
a recorded step costs the device the fused norm and nothing else: right after a backward pass
the CPU's caches are cold and each further small operation costs 5-20 us there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["model_layers", "layer_modules", "LayerNorms", "LayerGroups", "norm_dtype", "tensor_norm", "tensor_norms", "grouped_norms", "combined_norm"]


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


def norm_dtype(dtypes: set[torch.dtype]) -> torch.dtype | None:
    """The dtype to ask ``_foreach_norm`` for: ``None`` (each tensor's own) for float32 and
    float64 tensors, float32 where a tensor is in half precision (float16, bfloat16)."""
    return torch.float32 if dtypes & {torch.float16, torch.bfloat16} else None


def tensor_norm(tensor: torch.Tensor) -> torch.Tensor:
    """One tensor's L2 norm, in the dtype ``norm_dtype`` gives for it."""
    return torch.linalg.vector_norm(tensor, dtype=norm_dtype({tensor.dtype}))


def tensor_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's L2 norm, as ``tensor_norm`` gives it, in one ``_foreach_norm`` per dtype
    (one in all, unless the tensors mix dtypes: a float64 tensor cannot be normed in float32)."""
    dtypes = {tensor.dtype for tensor in tensors}
    if len(dtypes) == 1:
        return list(torch._foreach_norm(tensors, 2, dtype=norm_dtype(dtypes)))
    norms: list[torch.Tensor | None] = [None] * len(tensors)
    for dtype in dtypes:
        positions = [position for position, tensor in enumerate(tensors) if tensor.dtype == dtype]
        for position, norm in zip(positions, torch._foreach_norm([tensors[position] for position in positions], 2, dtype=norm_dtype({dtype}))):
            norms[position] = norm
    return norms  # type: ignore[return-value]  # every position filled


def grouped_norms(groups: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """``tensor_norms`` of every tensor of every group, in one go, handed back group by group."""
    norms = iter(tensor_norms([tensor for group in groups for tensor in group]))
    return [[next(norms) for _ in group] for group in groups]


def combined_norm(norms: list[torch.Tensor], missing: torch.Tensor) -> torch.Tensor:
    """The L2 norm of the tensors whose norms are ``norms`` taken together (one output reached
    by several backward passes); ``missing`` (a NaN) when there are none."""
    if len(norms) == 1:
        return norms[0]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else missing


@dataclass(frozen=True, eq=False)
class LayerGroups:
    """Which per-tensor norms make up each layer, for one pattern of present tensors.

    ``combine`` turns rows of per-tensor norms into rows of ``[layer norms..., weight parts...,
    bias parts..., global norm]`` (``3 * num_layers + 1`` values; 0.0 for a group without
    tensors): one unbuffered add of squares (numpy, on the host) for all rows of a read-back, in float64
    (float32 norms cannot overflow when squared), NaN and inf staying in their own groups as in
    ``torch.linalg.vector_norm``.

    Attributes:
        present: How many tensors the pattern has (the width of a row).
        num_layers: The number of layers.
        sources, targets: For each contribution, the tensor's position in a row and the column
            it adds its square to (each tensor adds to its layer, its part and the total).
    """

    present: int
    num_layers: int
    sources: np.ndarray
    targets: np.ndarray

    def combine(self, rows: np.ndarray) -> np.ndarray:
        squares = np.square(np.asarray(rows, dtype=np.float64).reshape(len(rows), self.present))
        sums = np.zeros((len(rows), 3 * self.num_layers + 1))
        with np.errstate(invalid="ignore"):  # inf + inf is inf; a NaN stays where it is
            np.add.at(sums.T, self.targets, squares[:, self.sources].T)  # columns, through a view
        return np.sqrt(sums)


class LayerNorms:
    """Per-layer L2 norms, on the host, from the per-tensor norms of tensors that match a
    model's parameters (gradients, weights, weight updates).

    Args:
        layer_of_parameter: For each parameter (in order), the index of its layer.
        num_layers: The number of layers.
        bias_parameters: For each parameter, whether it is a bias (default: none is).
    """

    def __init__(self, layer_of_parameter: list[int], num_layers: int, bias_parameters: list[bool] | None = None) -> None:
        self.layer_of_parameter = layer_of_parameter
        self.bias_parameters = bias_parameters or [False] * len(layer_of_parameter)
        self.num_layers = num_layers
        self._cache: dict[tuple[bool, ...] | None, LayerGroups] = {}

    def groups(self, present: tuple[bool, ...] | None = None) -> LayerGroups:
        """The grouping of norms of the parameters flagged in ``present`` (``None``: all of
        them, in order): gradients can be missing for some parameters. Made once per pattern."""
        groups = self._cache.get(present)
        if groups is None:
            flags = present if present is not None else (True,) * len(self.layer_of_parameter)
            layers = self.num_layers
            sources: list[int] = []
            targets: list[int] = []
            position = 0
            for layer, bias, here in zip(self.layer_of_parameter, self.bias_parameters, flags):
                if here:
                    part = (2 if bias else 1) * layers + layer
                    sources += [position] * 3
                    targets += [layer, part, 3 * layers]
                    position += 1
            groups = LayerGroups(position, layers, np.asarray(sources, dtype=np.intp), np.asarray(targets, dtype=np.intp))
            self._cache[present] = groups
        return groups
