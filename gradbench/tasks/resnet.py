"""``cifar10_resnet18``: torchvision's ResNet-18 adapted to 32x32 images, activation swapped.

The ImageNet stem (7x7 stride-2 convolution, then 3x3 stride-2 max pooling) would shrink a
32x32 image to 8x8 before the first block; the usual CIFAR adaptation, used here, replaces it
by a 3x3 stride-1 convolution and drops the max pooling, so the four stages see 32, 16, 8 and 4
pixels. Every ``nn.ReLU`` module (the stem's and the one each ``BasicBlock`` applies twice) is
replaced by the run's activation; torchvision's ResNet applies no functional ReLU, so none is
left.

References:
    He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
    https://arxiv.org/abs/1512.03385.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from gradbench.axes.activations import build_activation
from gradbench.tasks.base import TaskConfig, TaskInstance, apply_init
from gradbench.tasks.blocks import image_data, map_norm

__all__ = ["resnet18_cifar", "replace_modules", "build_resnet18"]


def replace_modules(model: nn.Module, kind: type[nn.Module], make: Callable[[], nn.Module]) -> int:
    """Replace every submodule of type ``kind`` by ``make()``, in place; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, child_name, make())
                replaced += 1
    return replaced


def resnet18_cifar(*, num_classes: int = 10, norm: str = "batch", activation: str, activation_params: Mapping[str, Any] | None = None) -> nn.Module:
    """torchvision's ``resnet18`` for 32x32 inputs.

    Layers (``BasicBlock`` = conv3x3, norm, activation, conv3x3, norm, add shortcut, activation;
    a stage's first block strides by 2 with a 1x1 convolution + norm on its shortcut):

    1. ``conv1``: Conv2d(3, 64, 3x3, stride 1, padding 1, no bias), ``bn1``, activation
       (torchvision: 7x7 stride 2, then max pooling, both gone here)
    2. ``layer1``: 2 BasicBlocks, 64 channels, 32x32
    3. ``layer2``: 2 BasicBlocks, 128 channels, 16x16
    4. ``layer3``: 2 BasicBlocks, 256 channels, 8x8
    5. ``layer4``: 2 BasicBlocks, 512 channels, 4x4
    6. ``avgpool`` (global average), ``fc``: Linear(512, num_classes)

    torchvision's own initialisation (Kaiming normal, fan_out, ReLU gain, for every
    convolution, the new stem's included; norm scales 1, shifts 0) is the ``default`` init.

    Args:
        norm: ``batch`` (torchvision's), ``layer`` (GroupNorm with one group) or ``none``
            (identity: the network has no normalisation, and its convolutions no bias).
    """
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes, norm_layer=lambda channels: map_norm(norm, channels, 2))
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's other convs
    model.maxpool = nn.Identity()
    params = dict(activation_params or {})
    replace_modules(model, nn.ReLU, lambda: build_activation(activation, params))
    return model


def build_resnet18(config: TaskConfig) -> TaskInstance:
    """The ``cifar10_resnet18`` task's model and data (``gradbench.tasks.catalog`` declares it)."""
    assert config.activation is not None
    data = image_data("cifar10", config)
    model = resnet18_cifar(norm=config.knobs["norm"], activation=config.activation, activation_params=config.activation_params)
    apply_init(model, config)
    return TaskInstance(model, data, nn.functional.cross_entropy, metric="accuracy", target=config.knobs["target"])
