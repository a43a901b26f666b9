"""A plain deep CNN whose depth is a knob: He et al.'s CIFAR-10 networks, plain or residual.

He et al. (2016, section 4.2) built CIFAR-10 networks of ``6n + 2`` weighted layers (20, 32,
44, 56, 110) and showed that the plain ones train *worse* as they get deeper while the
residual ones, same layers plus identity shortcuts, do not. ``residual=false`` is their plain
net, ``residual=true`` their ResNet; ``norm=batch`` adds their batch normalisation. The default
is the plain net without normalisation, where gradients vanish or explode through the
convolutions as the depth grows.

Two tasks use it: ``cifar10_deep_cnn`` (as in the paper) and ``mnist1d_deep_cnn``, the same
network with 1-D convolutions on MNIST-1D, which trains offline on a CPU.

References:
    He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
    https://arxiv.org/abs/1512.03385.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from gradbench.axes.activations import build_activation
from gradbench.tasks.base import TaskConfig, TaskInstance, apply_init
from gradbench.tasks.blocks import map_norm, task_data

__all__ = ["DeepCNN", "ConvBlock", "build_deep_cnn"]


class ConvBlock(nn.Module):
    """Two 3-wide convolutions: ``act(norm(conv1(x)))``, then ``act(norm(conv2(.)) [+ shortcut(x)])``.

    The shortcut (``residual=True``) is He et al.'s option A: the identity, subsampled and with
    zero channels appended where the block halves the resolution and doubles the channels, so
    that a residual net has exactly the parameters of its plain twin.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, spatial_dims: int, norm: str, residual: bool, activation: str, activation_params: Mapping[str, Any]) -> None:
        super().__init__()
        conv = nn.Conv1d if spatial_dims == 1 else nn.Conv2d
        bias = norm == "none"  # a normalisation layer's shift makes a bias redundant
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = map_norm(norm, out_channels, spatial_dims)
        self.act1 = build_activation(activation, dict(activation_params))
        self.conv2 = conv(out_channels, out_channels, 3, stride=1, padding=1, bias=bias)
        self.norm2 = map_norm(norm, out_channels, spatial_dims)
        self.act2 = build_activation(activation, dict(activation_params))
        self.residual = residual
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.residual:
            out = out + self._shortcut(x)
        return self.act2(out)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[..., :: self.stride] if x.dim() == 3 else x[..., :: self.stride, :: self.stride]
        if self.extra_channels:
            # F.pad pads the last dimensions first: leave the spatial ones, extend the channels.
            x = functional.pad(x, (0, 0) * (x.dim() - 2) + (0, self.extra_channels))
        return x


class DeepCNN(nn.Module):
    """He et al.'s CIFAR-10 network with ``depth = 6n + 2`` weighted layers.

    Layers (``width`` = 16 in the paper; every convolution 3x3, or 3 wide in 1-D, padding 1):

    1. ``stem``: conv (in_channels -> width), norm, activation
    2. ``stages.0``: n ``ConvBlock``s at ``width`` channels (2n convolutions)
    3. ``stages.1``: n blocks at ``2 * width``; the first convolution has stride 2
    4. ``stages.2``: n blocks at ``4 * width``; the first convolution has stride 2
    5. ``head``: global average pooling, Linear(4 * width, num_classes)

    That is ``1 + 6n + 1 = depth`` weighted layers. Convolutions have a bias only without
    normalisation.

    Args:
        in_channels, num_classes: Input channels and number of classes.
        spatial_dims: 1 (signals ``[N, C, L]``) or 2 (images ``[N, C, H, W]``).
        depth: 6n + 2 with n >= 1.
        width: Channels of the first stage.
        norm: ``none``, ``batch`` or ``layer``.
        residual: Identity shortcuts around every block (a ResNet); false: the plain net.
    """

    def __init__(self, in_channels: int, num_classes: int, *, spatial_dims: int, depth: int, width: int, norm: str, residual: bool, activation: str, activation_params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"invalid depth={depth}: must be 6n + 2 with n >= 1")
        params = dict(activation_params or {})
        blocks_per_stage = (depth - 2) // 6
        conv = nn.Conv1d if spatial_dims == 1 else nn.Conv2d
        self.stem = nn.Sequential(
            conv(in_channels, width, 3, padding=1, bias=norm == "none"),
            map_norm(norm, width, spatial_dims),
            build_activation(activation, params),
        )
        stages = []
        channels = width
        for stage in range(3):
            out_channels = width * 2**stage
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(ConvBlock(channels, out_channels, stride=stride, spatial_dims=spatial_dims, norm=norm, residual=residual, activation=activation, activation_params=params))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 1 and x.dim() == 2:
            x = x.unsqueeze(1)  # [N, L] signals -> one channel
        features = self.stages(self.stem(x))
        return self.head(features.flatten(2).mean(dim=2))


def build_deep_cnn(config: TaskConfig, *, spatial_dims: int, in_channels: int, data: str) -> TaskInstance:
    """A deep CNN task's model and data (``gradbench.tasks.catalog`` declares the tasks):
    ``data`` names the dataset (``blocks.task_data``), of ``in_channels`` channels."""
    assert config.activation is not None
    dataset = task_data(data, config)
    model = DeepCNN(
        in_channels, 10, spatial_dims=spatial_dims, depth=config.knobs["depth"], width=config.knobs["width"],
        norm=config.knobs["norm"], residual=config.knobs["residual"],
        activation=config.activation, activation_params=config.activation_params,
    )
    apply_init(model, config)
    return TaskInstance(model, dataset, nn.functional.cross_entropy, metric="accuracy", target=config.knobs["target"])
