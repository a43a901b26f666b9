"""The built-in tasks as data: names, descriptions, knobs, their choices, bounds and rules.

Each task's ``build`` names its family's build function by path (``Deferred``): the family's
module, and torch with it, is imported on the first build, so ``gradbench list tasks`` and
checking a ``--where task=...`` spec import no torch. Registered in the order ``gradbench list
tasks`` shows them, family by family: ``mlp``, ``cnn``, ``deep_cnn``, ``resnet``, ``rnn``,
``quadratic``, ``linreg`` (each family's module documents its models and references).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gradbench._lazy import Deferred
from gradbench.tasks.base import (
    LOSS_CHOICES, MNIST1D_BOUNDS, MNIST1D_KNOBS, MNIST1D_UNKEYED, NORM_CHOICES, Task, mnist1d_train_size, register_task,
)

__all__: list[str] = []  # nothing to import: importing it registers the tasks

TrainSize = Callable[[Mapping[str, Any]], int]
KnobRule = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]

# -- mlp: deep MLPs ---------------------------------------------------------------------------

_MLP_KNOBS = {"depth": 8, "width": 64, "norm": "none", "residual": False, "bias": True, "loss": "cross_entropy", "standardize": False}
# Knobs that came after results were stored: while at their default, cells keep their keys.
_MLP_UNKEYED = frozenset({"bias", "loss", "standardize"})


def _mlp_task(
    name: str, description: str, data: str, *, in_features: int, knobs: Mapping[str, Any], batch_size: int, datasets: tuple[str, ...] = (),
    unkeyed_defaults: frozenset[str] = frozenset(), knob_bounds: Mapping[str, tuple[float | None, float | None]] | None = None, train_size: TrainSize | None = None,
) -> Task:
    return Task(
        name=name, description=description, build=Deferred("gradbench.tasks.mlp:build_mlp", in_features=in_features, data=data),
        knobs={**_MLP_KNOBS, **knobs}, batch_size=batch_size,
        knob_choices={"norm": NORM_CHOICES, "loss": LOSS_CHOICES}, knob_bounds={"depth": (0, None), **(knob_bounds or {})},
        datasets=datasets, unkeyed_defaults=_MLP_UNKEYED | unkeyed_defaults, train_size=train_size,
    )


register_task(_mlp_task(
    "mnist1d_mlp",
    "deep MLP on MNIST-1D (40-sample 1-D signals, 10 classes, 4000/1000 split), generated offline",
    "mnist1d", in_features=40, knobs={**MNIST1D_KNOBS, "target": 0.5}, batch_size=64, train_size=mnist1d_train_size,
    # norm and residual came after the first results were stored: those cells keep their keys.
    unkeyed_defaults=frozenset({"norm", "residual"}) | MNIST1D_UNKEYED, knob_bounds=MNIST1D_BOUNDS,
))
register_task(_mlp_task(
    "digits_mlp",
    "deep MLP on scikit-learn's 8x8 digits (1437/360 split), bundled offline",
    "digits", in_features=64, knobs={"target": 0.9, "test_size": 0.2}, batch_size=64,
    unkeyed_defaults=frozenset({"test_size"}), knob_bounds={"test_size": (0.01, 0.99)}, train_size=Deferred("gradbench.tasks.datasets:digits_train_size"),
))
register_task(_mlp_task(
    "mnist_mlp",
    "deep MLP on MNIST (28x28, 60000/10000), from --data-dir",
    "mnist", in_features=784, knobs={"width": 256, "train_eval_size": 10000, "target": 0.97}, batch_size=128, datasets=("mnist",),
))
register_task(_mlp_task(
    "fashion_mnist_mlp",
    "deep MLP on Fashion-MNIST (28x28, 60000/10000), from --data-dir",
    "fashion_mnist", in_features=784, knobs={"width": 256, "train_eval_size": 10000, "target": 0.85}, batch_size=128, datasets=("fashion_mnist",),
))
register_task(_mlp_task(
    "cifar10_mlp",
    "deep MLP on CIFAR-10 flattened (3x32x32, 50000/10000), from --data-dir",
    "cifar10", in_features=3072, knobs={"width": 512, "train_eval_size": 10000, "target": 0.45}, batch_size=128, datasets=("cifar10",),
))

# -- cnn: the MNIST-1D CNN, DeepOBS 2c2d and 3c3d -------------------------------------------------

register_task(Task(
    name="mnist1d_cnn",
    description="the MNIST-1D paper's 3-layer 1-D CNN (25 channels) on MNIST-1D, offline",
    build=Deferred("gradbench.tasks.cnn:build_mnist1d_cnn"),
    knobs={"channels": 25, **MNIST1D_KNOBS, "target": 0.85},
    batch_size=100,  # the MNIST-1D paper's batch size
    unkeyed_defaults=MNIST1D_UNKEYED, knob_bounds=MNIST1D_BOUNDS, train_size=mnist1d_train_size,
))
register_task(Task(
    name="mnist_2c2d",
    description="DeepOBS 2c2d (2 conv + 2 dense) on MNIST, from --data-dir",
    build=Deferred("gradbench.tasks.cnn:build_2c2d", dataset="mnist"),
    knobs={"train_eval_size": 10000, "target": 0.99},
    batch_size=128,
    datasets=("mnist",),
))
register_task(Task(
    name="fashion_mnist_2c2d",
    description="DeepOBS 2c2d (2 conv + 2 dense) on Fashion-MNIST (DeepOBS's fmnist_2c2d), from --data-dir",
    build=Deferred("gradbench.tasks.cnn:build_2c2d", dataset="fashion_mnist"),
    knobs={"train_eval_size": 10000, "target": 0.9},
    batch_size=128,
    datasets=("fashion_mnist",),
))
register_task(Task(
    name="cifar10_3c3d",
    description="DeepOBS 3c3d (3 conv + 3 dense) on CIFAR-10, no augmentation, from --data-dir",
    build=Deferred("gradbench.tasks.cnn:build_cifar10_3c3d"),
    knobs={"train_eval_size": 10000, "target": 0.7},
    batch_size=128,
    datasets=("cifar10",),
))

# -- deep_cnn: He et al.'s plain / residual 6n+2-layer CNNs -------------------------------------


def _check_depth(knobs: Mapping[str, Any]) -> tuple[str, str] | None:
    depth = knobs["depth"]
    if (depth - 2) % 6 or depth < 8:
        return "depth", "must be 6n + 2 with n >= 1, as in He et al. (8, 14, 20, 32, 44, 56, 110, ...)"
    return None


def _deep_cnn_task(
    name: str, description: str, data: str, *, spatial_dims: int, in_channels: int, knobs: Mapping[str, Any], batch_size: int,
    datasets: tuple[str, ...] = (), unkeyed_defaults: frozenset[str] = frozenset(), knob_bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    train_size: TrainSize | None = None,
) -> Task:
    return Task(
        name=name, description=description,
        build=Deferred("gradbench.tasks.deep_cnn:build_deep_cnn", spatial_dims=spatial_dims, in_channels=in_channels, data=data),
        knobs={"depth": 20, "width": 16, "norm": "none", "residual": False, **knobs},
        batch_size=batch_size, knob_choices={"norm": NORM_CHOICES}, check_knobs=_check_depth, datasets=datasets,
        unkeyed_defaults=unkeyed_defaults, knob_bounds=knob_bounds or {}, train_size=train_size,
    )


register_task(_deep_cnn_task(
    "mnist1d_deep_cnn",
    "He et al.'s plain (or residual) 6n+2-layer CNN with 1-D convolutions on MNIST-1D, offline",
    "mnist1d", spatial_dims=1, in_channels=1,
    knobs={**MNIST1D_KNOBS, "target": 0.8}, batch_size=100, unkeyed_defaults=MNIST1D_UNKEYED, knob_bounds=MNIST1D_BOUNDS, train_size=mnist1d_train_size,
))
register_task(_deep_cnn_task(
    "cifar10_deep_cnn",
    "He et al.'s plain (or residual) 6n+2-layer CIFAR-10 CNN, depth a knob, from --data-dir",
    "cifar10", spatial_dims=2, in_channels=3,
    knobs={"train_eval_size": 10000, "target": 0.8}, batch_size=128, datasets=("cifar10",),
))

# -- resnet: ResNet-18 for 32x32 ----------------------------------------------------------------

register_task(Task(
    name="cifar10_resnet18",
    description="torchvision ResNet-18 with a 3x3 stride-1 stem, no max pooling, on CIFAR-10, from --data-dir",
    build=Deferred("gradbench.tasks.resnet:build_resnet18"),
    knobs={"norm": "batch", "train_eval_size": 10000, "target": 0.85},
    batch_size=128,
    knob_choices={"norm": NORM_CHOICES},
    datasets=("cifar10",),
))

# -- rnn: RNN, LSTM, GRU ------------------------------------------------------------------------

_CELL_NAMES = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU"}  # rnn.CELLS, in its order
# Both ways through the sequence, and a head on the last step or on every step (the MNIST-1D
# paper's GRU: bidirectional=true, readout=all). They came after results were stored: unkeyed.
_RECURRENT_SHAPE: Mapping[str, Any] = {"bidirectional": False, "readout": "last"}
READOUT_CHOICES = ("last", "all")


def _recurrent_task(
    name: str, description: str, cell: str, problem: str, *, knobs: Mapping[str, Any], batch_size: int,
    check_knobs: KnobRule | None = None, unkeyed_defaults: frozenset[str] = frozenset(),
    knob_bounds: Mapping[str, tuple[float | None, float | None]] | None = None, train_size: TrainSize | None = None,
) -> Task:
    return Task(
        name=name, description=description, build=Deferred("gradbench.tasks.rnn:build_recurrent", cell=cell, problem=problem),
        knobs={**({"nonlinearity": "tanh"} if cell == "rnn" else {}), **knobs, **_RECURRENT_SHAPE}, uses_activation=False, batch_size=batch_size,
        knob_choices={**({"nonlinearity": ("tanh", "relu")} if cell == "rnn" else {}), "readout": READOUT_CHOICES}, check_knobs=check_knobs,
        unkeyed_defaults=unkeyed_defaults | frozenset(_RECURRENT_SHAPE), knob_bounds=knob_bounds or {}, train_size=train_size,
    )


def _check_length(knobs: Mapping[str, Any]) -> tuple[str, str] | None:
    return ("length", "the adding problem needs at least 2 steps") if knobs["length"] < 2 else None


for _cell, _cell_name in _CELL_NAMES.items():
    register_task(_recurrent_task(
        f"adding_{_cell}",
        f"{_cell_name} on the adding problem (sum of 2 marked values in `length` steps; baseline MSE 1/6), generated offline",
        _cell, "adding",
        knobs={"length": 100, "depth": 1, "width": 128, "num_train": 10000, "target": 0.01},
        batch_size=64, check_knobs=_check_length,
    ))
for _cell, _cell_name in _CELL_NAMES.items():
    register_task(_recurrent_task(
        f"mnist1d_{_cell}",
        f"{_cell_name} reading MNIST-1D as a 40-step sequence, classified from the last step, offline",
        _cell, "mnist1d",
        knobs={"depth": 1, "width": 64, **MNIST1D_KNOBS, "target": 0.6},
        batch_size=100, unkeyed_defaults=MNIST1D_UNKEYED, knob_bounds=MNIST1D_BOUNDS, train_size=mnist1d_train_size,
    ))

# -- quadratic: DeepOBS's quadratic_deep ----------------------------------------------------------

register_task(Task(
    name="quadratic_deep",
    description="DeepOBS quadratic_deep: 100-dim noisy quadratic, 90 eigenvalues in (0,1) and 10 in (30,60)",
    build=Deferred("gradbench.tasks.quadratic:build_quadratic_deep"),
    knobs={"target_gap": 0.01},
    uses_activation=False,
    uses_init=False,  # theta starts at ones, as DeepOBS defines it
    batch_size=128,
))

# -- linreg: linear regression --------------------------------------------------------------------


def _linreg_train_size(knobs: Mapping[str, Any]) -> int:
    return knobs["num_train"]


register_task(Task(
    name="linreg",
    description="least-squares linear regression, y = xw + b + noise, closed-form optimum known",
    build=Deferred("gradbench.tasks.linreg:build_linreg"),
    knobs={"dim": 20, "num_train": 512, "noise": 0.1},
    uses_activation=False,
    batch_size=32,
    train_size=_linreg_train_size,
))
