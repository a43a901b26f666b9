"""Pieces the task families share: normalisation layers by name, a residual wrapper, real data.

``norm`` knobs take ``none``, ``batch`` or ``layer``:

- ``batch``: batch normalisation over the mini-batch (Ioffe & Szegedy 2015), ``BatchNorm1d`` for
  feature vectors and 1-D feature maps, ``BatchNorm2d`` for images;
- ``layer``: layer normalisation over each example's features (Ba et al. 2016): ``LayerNorm``
  for feature vectors, and for feature maps ``GroupNorm`` with one group, which normalises over
  channels and positions together as LayerNorm does, with one scale and shift per channel (Wu &
  He 2018, section 3.1);
- ``none``: no layer at all.

Normalisation sits between a layer's affine map and its activation, where Ioffe & Szegedy put it.

References:
    Ioffe & Szegedy, "Batch Normalization", https://arxiv.org/abs/1502.03167.
    Ba, Kiros & Hinton, "Layer Normalization", https://arxiv.org/abs/1607.06450.
    Wu & He, "Group Normalization", https://arxiv.org/abs/1803.08494.
"""

from __future__ import annotations

import torch
from torch import nn

from gradbench.tasks.base import NORM_CHOICES, TaskConfig
from gradbench.tasks.datasets import Dataset, train_eval_subset
from gradbench.tasks.image_datasets import load_image_dataset

__all__ = ["NORM_CHOICES", "feature_norm", "map_norm", "Residual", "image_data"]


def feature_norm(kind: str, features: int) -> nn.Module | None:
    """The normalisation layer ``kind`` for ``[N, features]`` inputs; ``None`` for ``none``."""
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    if kind == "none":
        return None
    raise ValueError(f"invalid norm {kind!r}; choose from: {', '.join(NORM_CHOICES)}")


def map_norm(kind: str, channels: int, spatial_dims: int) -> nn.Module:
    """The normalisation layer ``kind`` for feature maps ``[N, channels, *spatial]``.

    Returns ``nn.Identity()`` for ``none`` so that a block's structure (and its forward code)
    is the same whatever the knob.
    """
    if kind == "batch":
        return nn.BatchNorm1d(channels) if spatial_dims == 1 else nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"invalid norm {kind!r}; choose from: {', '.join(NORM_CHOICES)}")


class Residual(nn.Module):
    """``x + block(x)``: an identity shortcut around ``block`` (He et al. 2016).

    References:
        He et al., "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def image_data(name: str, config: TaskConfig) -> Dataset:
    """Real dataset ``name`` from the run's data directory, with the training loss evaluated on
    ``config.knobs["train_eval_size"]`` examples."""
    # The same Dataset object for every run of the process, so a GPU gets one copy of it.
    return train_eval_subset(load_image_dataset(name, config.data), config.knobs["train_eval_size"])
