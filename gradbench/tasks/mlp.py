"""Deep multilayer perceptrons on MNIST-1D, digits, MNIST, Fashion-MNIST and CIFAR-10.

The depth knob makes the vanishing-gradient effect visible: with sigmoid units and Glorot &
Bengio's "standard" initialisation each layer scales the back-propagated gradient by roughly
``0.25 / sqrt(3)``, so the first layer of a deep net receives orders of magnitude less
gradient than the last. ``norm`` and ``residual`` are the architectural remedies.

``depth=0`` is a linear model: one ``Linear(in, out)`` layer, logistic (softmax) regression
with the cross-entropy loss. ``bias=false`` drops every layer's bias; ``loss=mse`` trains on
the mean squared error to one-hot labels (as deep-linear-network studies do); ``standardize``
scales every input feature to mean 0 and variance 1 over the training set.

Every task uses the same uniform-width ``MLP`` (not DeepOBS's 1000-500-100 ``mnist_mlp``), so a
depth or width sweep changes one thing at a time. Images are flattened.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010.
    Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", https://arxiv.org/abs/2011.14439.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gradbench.axes.activations import build_activation
from gradbench.tasks.base import TaskConfig, TaskInstance, apply_init
from gradbench.tasks.blocks import Residual, classification_loss, feature_norm, task_data

__all__ = ["MLP", "build_mlp"]


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, then a linear output layer.

    Layers (``layers.<index>``), for ``norm=none, residual=false``:

    1. ``Linear(in_features, width)``, activation
    2. ``depth - 1`` times: ``Linear(width, width)``, activation
    3. ``Linear(width, out_features)`` (just ``Linear(in_features, out_features)`` at depth 0)

    ``norm`` inserts ``BatchNorm1d(width)`` or ``LayerNorm(width)`` between each hidden
    ``Linear`` and its activation. ``residual`` wraps hidden layers 2..depth (whose input and
    output widths agree) as ``h + activation(norm(Linear(h)))``. The monitored layers are the
    ``depth + 1`` linear layers, plus the normalisation layers, which own parameters too.

    Args:
        in_features, out_features: Input size (inputs are flattened) and number of outputs.
        depth, width: Number and width of the hidden layers.
        activation, activation_params: The hidden layers' activation.
        norm: ``none``, ``batch`` or ``layer``.
        residual: Identity shortcuts around hidden layers 2..depth.
        bias: Give every linear layer a bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        depth: int,
        width: int,
        activation: str,
        activation_params: Mapping[str, Any] | None = None,
        norm: str = "none",
        residual: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        features = in_features
        for index in range(depth):
            layer: list[nn.Module] = [nn.Linear(features, width, bias=bias)]
            normalisation = feature_norm(norm, width)
            if normalisation is not None:
                layer.append(normalisation)
            layer.append(build_activation(activation, dict(activation_params or {})))
            if residual and index > 0:  # the first layer changes the width: no identity there
                modules.append(Residual(nn.Sequential(*layer)))
            else:
                modules += layer
            features = width
        modules.append(nn.Linear(features, out_features, bias=bias))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


def build_mlp(config: TaskConfig, *, in_features: int, data: str) -> TaskInstance:
    """An MLP task's model and data (``gradbench.tasks.catalog`` declares the tasks): ``data``
    names the dataset (``blocks.task_data``), of ``in_features`` features once flattened."""
    knobs = config.knobs
    dataset = task_data(data, config)
    assert config.activation is not None and dataset.num_classes is not None
    model = MLP(
        in_features, dataset.num_classes, depth=knobs["depth"], width=knobs["width"],
        activation=config.activation, activation_params=config.activation_params,
        norm=knobs["norm"], residual=knobs["residual"], bias=knobs["bias"],
    )
    apply_init(model, config)
    loss = classification_loss(knobs["loss"])
    return TaskInstance(model, dataset, loss, metric="accuracy", target=knobs["target"], standardize=knobs["standardize"])
