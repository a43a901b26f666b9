"""Published small CNNs: the MNIST-1D paper's 1-D CNN and DeepOBS's ``2c2d`` and ``3c3d``.

Their layer shapes are fixed by their papers, so they take no depth or width knob (the
MNIST-1D CNN's channel count excepted); the activation axis replaces every ReLU. Under the
``default`` init each model keeps the initialisation its source uses: torch's layer defaults
for the MNIST-1D CNN (as its authors trained it), DeepOBS's for ``2c2d`` and ``3c3d``.

Where this differs from DeepOBS: no data augmentation on CIFAR-10 (see ``gradbench.tasks.image_datasets``) and
no L2 term in the loss (DeepOBS adds 0.002 * ||weights||^2 to ``cifar10_3c3d``'s loss; give the
optimizer ``weight_decay`` to approximate it).

References:
    Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", https://arxiv.org/abs/2011.14439.
    Schneider, Balles & Hennig, "DeepOBS: A Deep Learning Optimizer Benchmark Suite",
    https://arxiv.org/abs/1903.05499.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import nn

from gradbench.axes.activations import build_activation
from gradbench.tasks.base import TaskConfig, TaskInstance, apply_init
from gradbench.tasks.blocks import image_data, mnist1d_data
from gradbench.tasks.datasets import Dataset

__all__ = ["MNIST1DCNN", "TwoConvTwoDense", "ThreeConvThreeDense", "build_mnist1d_cnn", "build_2c2d", "build_cifar10_3c3d"]


class MNIST1DCNN(nn.Sequential):
    """The MNIST-1D paper's CNN (``ConvBase``), on ``[N, 40]`` signals.

    Layers (``channels`` = 25 in the paper):

    1. ``conv1``: Conv1d(1, channels, 5, stride 2, padding 1) -> length 19, activation
    2. ``conv2``: Conv1d(channels, channels, 3, stride 2, padding 1) -> length 10, activation
    3. ``conv3``: Conv1d(channels, channels, 3, stride 2, padding 1) -> length 5, activation
    4. ``linear``: flatten, Linear(5 * channels, 10)
    """

    def __init__(self, *, channels: int, activation: str, activation_params: Mapping[str, Any] | None = None) -> None:
        params = dict(activation_params or {})
        super().__init__(OrderedDict([
            ("unflatten", nn.Unflatten(1, (1, 40))),
            ("conv1", nn.Conv1d(1, channels, 5, stride=2, padding=1)),
            ("act1", build_activation(activation, params)),
            ("conv2", nn.Conv1d(channels, channels, 3, stride=2, padding=1)),
            ("act2", build_activation(activation, params)),
            ("conv3", nn.Conv1d(channels, channels, 3, stride=2, padding=1)),
            ("act3", build_activation(activation, params)),
            ("flatten", nn.Flatten()),
            ("linear", nn.Linear(5 * channels, 10)),
        ]))


class TwoConvTwoDense(nn.Sequential):
    """DeepOBS's ``2c2d`` (``net_mnist_2c2d``) for ``[N, 1, 28, 28]`` images.

    Layers:

    1. ``conv1``: Conv2d(1, 32, 5x5, "same" padding) -> 32x28x28, activation,
       MaxPool 2x2 stride 2 -> 32x14x14
    2. ``conv2``: Conv2d(32, 64, 5x5, "same") -> 64x14x14, activation, MaxPool 2x2 stride 2 -> 64x7x7
    3. ``dense1``: flatten, Linear(3136, 1024), activation
    4. ``dense2``: Linear(1024, 10)

    DeepOBS's initialisation: weights from a normal distribution with standard deviation 0.05
    truncated at two standard deviations, biases 0.05.
    """

    def __init__(self, *, activation: str, activation_params: Mapping[str, Any] | None = None) -> None:
        params = dict(activation_params or {})
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, 32, 5, padding=2)),
            ("act1", build_activation(activation, params)),
            ("pool1", nn.MaxPool2d(2, 2)),
            ("conv2", nn.Conv2d(32, 64, 5, padding=2)),
            ("act2", build_activation(activation, params)),
            ("pool2", nn.MaxPool2d(2, 2)),
            ("flatten", nn.Flatten()),
            ("dense1", nn.Linear(7 * 7 * 64, 1024)),
            ("act3", build_activation(activation, params)),
            ("dense2", nn.Linear(1024, 10)),
        ]))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.05, a=-0.1, b=0.1)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.05)


def _same_max_pool() -> nn.MaxPool2d:
    # TensorFlow's "same" 3x3 stride-2 max pooling: output ceil(n / 2), the missing row and
    # column added at the bottom and right and never chosen by the max. For the even sizes 3c3d
    # pools (28, 12, 6) ceil_mode does exactly that: one extra row and column, after the last
    # window start, ignored by the max (odd sizes would differ). DeepOBS's PyTorch
    # port pads with zeros instead, which agrees after a ReLU but not after an activation with
    # negative outputs; this follows TensorFlow, where the problem was defined.
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class ThreeConvThreeDense(nn.Sequential):
    """DeepOBS's ``3c3d`` (``net_cifar10_3c3d``) for ``[N, 3, 32, 32]`` images.

    Layers:

    1. ``conv1``: Conv2d(3, 64, 5x5, "valid") -> 64x28x28, activation, MaxPool 3x3 stride 2
       "same" -> 64x14x14
    2. ``conv2``: Conv2d(64, 96, 3x3, "valid") -> 96x12x12, activation, MaxPool 3x3 stride 2
       "same" -> 96x6x6
    3. ``conv3``: Conv2d(96, 128, 3x3, "same") -> 128x6x6, activation, MaxPool 3x3 stride 2
       "same" -> 128x3x3
    4. ``dense1``: flatten, Linear(1152, 512), activation
    5. ``dense2``: Linear(512, 256), activation
    6. ``dense3``: Linear(256, 10)

    DeepOBS's initialisation: convolutions Xavier normal, linear layers Xavier uniform, biases 0.
    """

    def __init__(self, *, activation: str, activation_params: Mapping[str, Any] | None = None) -> None:
        params = dict(activation_params or {})
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(3, 64, 5)),
            ("act1", build_activation(activation, params)),
            ("pool1", _same_max_pool()),
            ("conv2", nn.Conv2d(64, 96, 3)),
            ("act2", build_activation(activation, params)),
            ("pool2", _same_max_pool()),
            ("conv3", nn.Conv2d(96, 128, 3, padding=1)),
            ("act3", build_activation(activation, params)),
            ("pool3", _same_max_pool()),
            ("flatten", nn.Flatten()),
            ("dense1", nn.Linear(3 * 3 * 128, 512)),
            ("act4", build_activation(activation, params)),
            ("dense2", nn.Linear(512, 256)),
            ("act5", build_activation(activation, params)),
            ("dense3", nn.Linear(256, 10)),
        ]))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)


def _classifier(model: nn.Module, data: Dataset, config: TaskConfig) -> TaskInstance:
    apply_init(model, config)
    return TaskInstance(model, data, nn.functional.cross_entropy, metric="accuracy", target=config.knobs["target"])


# Each task's model and data; gradbench.tasks.catalog declares the tasks.


def build_mnist1d_cnn(config: TaskConfig) -> TaskInstance:
    assert config.activation is not None
    data = mnist1d_data(config.knobs)
    model = MNIST1DCNN(channels=config.knobs["channels"], activation=config.activation, activation_params=config.activation_params)
    return _classifier(model, data, config)


def build_2c2d(config: TaskConfig, *, dataset: str) -> TaskInstance:
    assert config.activation is not None
    model = TwoConvTwoDense(activation=config.activation, activation_params=config.activation_params)
    return _classifier(model, image_data(dataset, config), config)


def build_cifar10_3c3d(config: TaskConfig) -> TaskInstance:
    assert config.activation is not None
    model = ThreeConvThreeDense(activation=config.activation, activation_params=config.activation_params)
    return _classifier(model, image_data("cifar10", config), config)
