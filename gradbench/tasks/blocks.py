"""Pieces the task families share: normalisation layers by name, a residual wrapper, the data
a task reads by name, the classification losses by name, and (declared torch-free in
``base``, for the catalog) MNIST-1D's knobs and the norm and loss names.

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

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gradbench.tasks.base import LOSS_CHOICES, MNIST1D_BOUNDS, MNIST1D_KNOBS, MNIST1D_UNKEYED, NORM_CHOICES, LossFn, TaskConfig, TaskInstance
from gradbench.tasks.datasets import Dataset, load_digits, load_mnist1d, train_eval_subset
from gradbench.tasks.image_datasets import load_image_dataset

__all__ = [
    "NORM_CHOICES", "LOSS_CHOICES", "feature_norm", "map_norm", "Residual", "image_data", "classification_loss", "one_hot_mse",
    "MNIST1D_KNOBS", "MNIST1D_UNKEYED", "MNIST1D_BOUNDS", "mnist1d_data", "task_data", "constant_prediction_loss",
]


def mnist1d_data(knobs: Mapping[str, Any]) -> Dataset:
    """MNIST-1D as a task's knobs ask for it."""
    return load_mnist1d(num_samples=knobs["num_samples"], test_size=knobs.get("test_size", 0.2), shuffle_seq=knobs.get("shuffle_seq", False))


def one_hot_mse(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean squared error between the outputs and the one-hot labels, averaged over every
    output of every example (``mse_loss`` on one-hot targets), as deep-linear-network studies
    train classifiers."""
    return nn.functional.mse_loss(outputs, nn.functional.one_hot(labels, outputs.shape[1]).to(outputs.dtype))


_LOSSES: dict[str, LossFn] = {"cross_entropy": nn.functional.cross_entropy, "mse": one_hot_mse}  # LOSS_CHOICES, in its order


def constant_prediction_loss(instance: TaskInstance) -> float | None:
    """The training loss of the best constant prediction, for the losses gradbench knows:
    cross-entropy (the entropy of the label frequencies: ln C for balanced classes), MSE on
    one-hot labels ((1 - sum p_c^2) / C: predict the frequencies) and MSE on targets (their
    variance: predict their mean). ``None`` for any other loss."""
    if instance.chance_loss is not None:
        return instance.chance_loss
    y = instance.data.y_train
    if instance.loss_fn in (nn.functional.cross_entropy, one_hot_mse) and instance.data.num_classes:
        frequencies = torch.bincount(y.reshape(-1).long(), minlength=instance.data.num_classes).double() / y.numel()
        if instance.loss_fn is one_hot_mse:
            return float((1.0 - frequencies.square().sum()) / instance.data.num_classes)
        present = frequencies[frequencies > 0]
        return float(-(present * present.log()).sum())
    if instance.loss_fn is nn.functional.mse_loss and y.is_floating_point():
        return float(y.double().reshape(y.shape[0], -1).var(dim=0, unbiased=False).mean())
    return None


def classification_loss(name: str) -> LossFn:
    """``cross_entropy`` (softmax and negative log-likelihood) or ``mse`` on one-hot labels."""
    if name not in _LOSSES:
        raise ValueError(f"invalid loss {name!r}; choose from: {', '.join(LOSS_CHOICES)}")
    return _LOSSES[name]


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


def task_data(source: str, config: TaskConfig) -> Dataset:
    """The dataset a task family's build reads, by name: ``mnist1d`` and ``digits`` (made as
    the task's knobs ask), or a real dataset (``mnist``, ``fashion_mnist``, ``cifar10``) from the
    run's data directory (``image_data``)."""
    if source == "mnist1d":
        return mnist1d_data(config.knobs)
    if source == "digits":
        return load_digits(test_size=config.knobs["test_size"])
    return image_data(source, config)
