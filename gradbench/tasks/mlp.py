"""Deep multilayer perceptrons: ``mnist1d_mlp``.

The depth knob makes the vanishing-gradient effect visible: with sigmoid units and Glorot &
Bengio's "standard" initialisation each layer scales the back-propagated gradient by roughly
``0.25 / sqrt(3)``, so the first layer of a deep net receives orders of magnitude less
gradient than the last.
"""

from __future__ import annotations

from torch import nn

from gradbench.activations import activation_gain, build_activation
from gradbench.data import load_mnist1d
from gradbench.init import initialise
from gradbench.tasks.base import Task, TaskConfig, TaskInstance, register_task

__all__ = ["MLP"]


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, each ``Linear -> activation``, then a linear output.

    Layers (``layers.<index>``): ``Linear(in, width)``, activation, ``depth - 1`` times
    ``Linear(width, width)``, activation, and ``Linear(width, out)``. The activation modules have
    no parameters, so the monitored layers are the ``depth + 1`` linear layers.
    """

    def __init__(self, in_features: int, out_features: int, *, depth: int, width: int, activation: str, activation_params: dict | None = None) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        features = in_features
        for _ in range(depth):
            modules += [nn.Linear(features, width), build_activation(activation, activation_params)]
            features = width
        modules.append(nn.Linear(features, out_features))
        self.layers = nn.Sequential(*modules)

    def forward(self, x):
        return self.layers(x.flatten(1))


def _mnist1d_train_size(knobs) -> int:
    per_class = knobs["num_samples"] // 10  # make_dataset draws num_samples // 10 per digit
    return int(10 * per_class * 0.8)  # and keeps the first 80% for training


def _check_mnist1d_knobs(knobs) -> None:
    if knobs["num_samples"] < 20:
        raise ValueError(f"invalid knob num_samples={knobs['num_samples']} for task 'mnist1d_mlp': must be >= 20 (2 per class)")
    if not 0 <= knobs["target"] <= 1:
        raise ValueError(f"invalid knob target={knobs['target']} for task 'mnist1d_mlp': an accuracy in [0, 1]")


def _build_mnist1d_mlp(config: TaskConfig) -> TaskInstance:
    knobs = config.knobs
    data = load_mnist1d(num_samples=knobs["num_samples"])
    assert config.activation is not None
    model = MLP(40, 10, depth=knobs["depth"], width=knobs["width"], activation=config.activation, activation_params=dict(config.activation_params))
    if config.init is not None:
        initialise(model, config.init, activation_gain(config.activation, config.activation_params), config.init_params)
    return TaskInstance(model, data, nn.functional.cross_entropy, metric="accuracy", target=knobs["target"])


register_task(
    Task(
        name="mnist1d_mlp",
        description="deep MLP on MNIST-1D (40-sample 1-D signals, 10 classes, 4000/1000 split), generated offline",
        build=_build_mnist1d_mlp,
        knobs={"depth": 8, "width": 64, "num_samples": 5000, "target": 0.5},
        batch_size=64,
        train_size=_mnist1d_train_size,
        check=_check_mnist1d_knobs,
    )
)
