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

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gradbench.axes.activations import build_activation
from gradbench.tasks.base import NORM_CHOICES, Task, TaskConfig, TaskInstance, apply_init, mnist1d_train_size, register_task
from gradbench.tasks.blocks import LOSS_CHOICES, MNIST1D_BOUNDS, MNIST1D_KNOBS, MNIST1D_UNKEYED, Residual, classification_loss, feature_norm, image_data, mnist1d_data
from gradbench.tasks.datasets import Dataset, digits_train_size, load_digits

__all__ = ["MLP"]


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


_MLP_KNOBS = {"depth": 8, "width": 64, "norm": "none", "residual": False, "bias": True, "loss": "cross_entropy", "standardize": False}
# Knobs that came after results were stored: while at their default, cells keep their keys.
_MLP_UNKEYED = frozenset({"bias", "loss", "standardize"})


def _mlp_task(
    name: str,
    description: str,
    load: Callable[[TaskConfig], Dataset],
    *,
    in_features: int,
    knobs: Mapping[str, Any],
    batch_size: int,
    datasets: tuple[str, ...] = (),
    unkeyed_defaults: frozenset[str] = frozenset(),
    knob_bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    train_size: Callable[[Mapping[str, Any]], int] | None = None,
) -> Task:
    def build(config: TaskConfig) -> TaskInstance:
        knobs = config.knobs
        data = load(config)
        assert config.activation is not None and data.num_classes is not None
        model = MLP(
            in_features, data.num_classes, depth=knobs["depth"], width=knobs["width"],
            activation=config.activation, activation_params=config.activation_params,
            norm=knobs["norm"], residual=knobs["residual"], bias=knobs["bias"],
        )
        apply_init(model, config)
        loss = classification_loss(knobs["loss"])
        return TaskInstance(model, data, loss, metric="accuracy", target=knobs["target"], standardize=knobs["standardize"])

    return Task(
        name=name, description=description, build=build, knobs={**_MLP_KNOBS, **knobs}, batch_size=batch_size,
        knob_choices={"norm": NORM_CHOICES, "loss": LOSS_CHOICES}, knob_bounds={"depth": (0, None), **(knob_bounds or {})},
        datasets=datasets, unkeyed_defaults=_MLP_UNKEYED | unkeyed_defaults, train_size=train_size,
    )


register_task(_mlp_task(
    "mnist1d_mlp",
    "deep MLP on MNIST-1D (40-sample 1-D signals, 10 classes, 4000/1000 split), generated offline",
    lambda config: mnist1d_data(config.knobs),
    in_features=40, knobs={**MNIST1D_KNOBS, "target": 0.5}, batch_size=64, train_size=mnist1d_train_size,
    # norm and residual came after the first results were stored: those cells keep their keys.
    unkeyed_defaults=frozenset({"norm", "residual"}) | MNIST1D_UNKEYED, knob_bounds=MNIST1D_BOUNDS,
))
register_task(_mlp_task(
    "digits_mlp",
    "deep MLP on scikit-learn's 8x8 digits (1437/360 split), bundled offline",
    lambda config: load_digits(test_size=config.knobs["test_size"]),
    in_features=64, knobs={"target": 0.9, "test_size": 0.2}, batch_size=64,
    unkeyed_defaults=frozenset({"test_size"}), knob_bounds={"test_size": (0.01, 0.99)}, train_size=digits_train_size,
))
register_task(_mlp_task(
    "mnist_mlp",
    "deep MLP on MNIST (28x28, 60000/10000), from --data-dir",
    lambda config: image_data("mnist", config),
    in_features=784, knobs={"width": 256, "train_eval_size": 10000, "target": 0.97}, batch_size=128, datasets=("mnist",),
))
register_task(_mlp_task(
    "fashion_mnist_mlp",
    "deep MLP on Fashion-MNIST (28x28, 60000/10000), from --data-dir",
    lambda config: image_data("fashion_mnist", config),
    in_features=784, knobs={"width": 256, "train_eval_size": 10000, "target": 0.85}, batch_size=128, datasets=("fashion_mnist",),
))
register_task(_mlp_task(
    "cifar10_mlp",
    "deep MLP on CIFAR-10 flattened (3x32x32, 50000/10000), from --data-dir",
    lambda config: image_data("cifar10", config),
    in_features=3072, knobs={"width": 512, "train_eval_size": 10000, "target": 0.45}, batch_size=128, datasets=("cifar10",),
))
