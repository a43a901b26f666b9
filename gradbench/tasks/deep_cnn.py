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

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from gradbench.axes.activations import build_activation
from gradbench.tasks.base import NORM_CHOICES, Task, TaskConfig, TaskInstance, apply_init, mnist1d_train_size, register_task
from gradbench.tasks.blocks import MNIST1D_BOUNDS, MNIST1D_KNOBS, MNIST1D_UNKEYED, image_data, map_norm, mnist1d_data
from gradbench.tasks.datasets import Dataset

__all__ = ["DeepCNN", "ConvBlock"]


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


def _check_depth(knobs: Mapping[str, Any]) -> tuple[str, str] | None:
    depth = knobs["depth"]
    if (depth - 2) % 6 or depth < 8:
        return "depth", "must be 6n + 2 with n >= 1, as in He et al. (8, 14, 20, 32, 44, 56, 110, ...)"
    return None


def _deep_cnn_task(
    name: str, description: str, *, spatial_dims: int, load: Callable[[TaskConfig], Dataset], in_channels: int, knobs: Mapping[str, Any], batch_size: int,
    datasets: tuple[str, ...] = (), unkeyed_defaults: frozenset[str] = frozenset(), knob_bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    train_size: Callable[[Mapping[str, Any]], int] | None = None,
) -> Task:
    def build(config: TaskConfig) -> TaskInstance:
        assert config.activation is not None
        data = load(config)
        model = DeepCNN(
            in_channels, 10, spatial_dims=spatial_dims, depth=config.knobs["depth"], width=config.knobs["width"],
            norm=config.knobs["norm"], residual=config.knobs["residual"],
            activation=config.activation, activation_params=config.activation_params,
        )
        apply_init(model, config)
        return TaskInstance(model, data, nn.functional.cross_entropy, metric="accuracy", target=config.knobs["target"])

    return Task(
        name=name, description=description, build=build,
        knobs={"depth": 20, "width": 16, "norm": "none", "residual": False, **knobs},
        batch_size=batch_size, knob_choices={"norm": NORM_CHOICES}, check_knobs=_check_depth, datasets=datasets,
        unkeyed_defaults=unkeyed_defaults, knob_bounds=knob_bounds or {}, train_size=train_size,
    )


register_task(_deep_cnn_task(
    "mnist1d_deep_cnn",
    "He et al.'s plain (or residual) 6n+2-layer CNN with 1-D convolutions on MNIST-1D, offline",
    spatial_dims=1, load=lambda config: mnist1d_data(config.knobs), in_channels=1,
    knobs={**MNIST1D_KNOBS, "target": 0.8}, batch_size=100, unkeyed_defaults=MNIST1D_UNKEYED, knob_bounds=MNIST1D_BOUNDS, train_size=mnist1d_train_size,
))
register_task(_deep_cnn_task(
    "cifar10_deep_cnn",
    "He et al.'s plain (or residual) 6n+2-layer CIFAR-10 CNN, depth a knob, from --data-dir",
    spatial_dims=2, load=lambda config: image_data("cifar10", config), in_channels=3,
    knobs={"train_eval_size": 10000, "target": 0.8}, batch_size=128, datasets=("cifar10",),
))
