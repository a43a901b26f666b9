"""How a registry entry splits a model's parameters into optimizer parameter groups.

Two splits, each named by an option of the optimizer's spec:

* ``no_decay_on_bias_and_norm=true`` (any optimizer with a ``weight_decay``): biases and the
  parameters of normalisation layers get ``weight_decay=0``, every other parameter the entry's
  decay, as AdamW is conventionally used (Loshchilov & Hutter; BERT, GPT-2, nanoGPT).
* ``hidden_matrices`` (Muon): the 2-D weight matrices of hidden layers go to the entry's
  optimizer; everything else (biases, norm weights, embeddings, convolution kernels, and the
  output layer) to its companion (Jordan et al. 2024: Muon is for hidden matrices only).

The output layer is the model's ``output_layer`` attribute where it has one (a task whose head
is not the last layer it defines should set it), else the last module, in definition order,
that holds parameters of its own and is not a normalisation layer: in every built-in task that
is the head (``tests/axes/test_param_groups.py`` checks each family), found without a forward
pass.

Given bare parameters instead of a model, the splits see only shapes: biases and norm weights
are the tensors of fewer than two dimensions, and no parameter is known to be the output layer.

Imports torch: imported only when an optimizer is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Split", "output_layer", "is_norm_layer", "split_decay", "split_hidden_matrices"]

_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)


@dataclass
class Split:
    """Parameters in two groups, with their names (``""``-prefixed indices for bare tensors)."""

    chosen: list[tuple[str, nn.Parameter]]
    rest: list[tuple[str, nn.Parameter]]

    @property
    def chosen_names(self) -> list[str]:
        return [name for name, _ in self.chosen]

    @property
    def rest_names(self) -> list[str]:
        return [name for name, _ in self.rest]


def is_norm_layer(module: nn.Module) -> bool:
    return isinstance(module, _NORM_LAYERS)


def output_layer(model: nn.Module) -> nn.Module | None:
    """The layer that makes the model's output (see the module docstring for the rule)."""
    declared = getattr(model, "output_layer", None)
    if isinstance(declared, nn.Module):
        return declared
    last = None
    for module in model.modules():
        if not is_norm_layer(module) and any(True for _ in module.parameters(recurse=False)):
            last = module
    return last


def _owned(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Parameter]]:
    """Every trainable parameter once, with its owning module: (full name, module, own name, parameter)."""
    seen: set[int] = set()
    owned = []
    for module_name, module in model.named_modules():
        for own_name, parameter in module.named_parameters(recurse=False):
            if parameter.requires_grad and id(parameter) not in seen:
                seen.add(id(parameter))
                owned.append((f"{module_name}.{own_name}" if module_name else own_name, module, own_name, parameter))
    return owned


def _bare(parameters: Iterable[torch.Tensor]) -> list[tuple[str, nn.Parameter]]:
    return [(str(index), parameter) for index, parameter in enumerate(parameters)]  # type: ignore[misc]


def split_decay(source: nn.Module | Iterable[torch.Tensor]) -> Split:
    """``chosen``: the parameters weight decay applies to; ``rest``: biases and norm-layer
    parameters (with bare tensors: those of fewer than two dimensions)."""
    if not isinstance(source, nn.Module):
        pairs = _bare(source)
        return Split([p for p in pairs if p[1].ndim >= 2], [p for p in pairs if p[1].ndim < 2])
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, module, own_name, parameter in _owned(source):
        exempt = own_name == "bias" or own_name.startswith("bias_") or is_norm_layer(module)
        (no_decay if exempt else decay).append((name, parameter))
    return Split(decay, no_decay)


def split_hidden_matrices(source: nn.Module | Iterable[torch.Tensor]) -> Split:
    """``chosen``: the 2-D weights of hidden layers (recurrent ``weight_ih``/``weight_hh``
    included); ``rest``: everything else, the output layer and embeddings included."""
    if not isinstance(source, nn.Module):
        pairs = _bare(source)
        return Split([p for p in pairs if p[1].ndim == 2], [p for p in pairs if p[1].ndim != 2])
    head = output_layer(source)
    hidden: list[tuple[str, nn.Parameter]] = []
    rest: list[tuple[str, nn.Parameter]] = []
    for name, module, _, parameter in _owned(source):
        matrix = parameter.ndim == 2 and module is not head and not isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        (hidden if matrix else rest).append((name, parameter))
    return Split(hidden, rest)
