"""Recurrent networks (vanilla RNN, LSTM, GRU) on the adding problem and on MNIST-1D as a sequence.

The adding problem is the classic test of gradients through time: the two numbers to add sit
about ``T / 2`` steps apart, and one of them ``T / 2`` or more steps before the end, so the
loss's gradient reaches them only through that many recurrent steps. A vanilla tanh RNN stalls
at the baseline MSE of 1/6 once ``T`` is long enough; gated cells (LSTM, GRU) were designed to
get through. The ``length`` knob is the papers' ``T``: sweep it to see where each cell breaks.

MNIST-1D read as a 40-step sequence, one sample per step, is classified from the last hidden
state, like pixel-by-pixel sequential MNIST (Le et al. 2015): every input reaches the loss only
through time. The MNIST-1D paper's GRU baseline (``GRUBase``: 6 units, bidirectional, a linear
readout of every step's hidden state) is ``mnist1d_gru[width=6,bidirectional=true,readout=all]``;
it makes the task easier, since each step then reaches the loss directly.

Layers are stacked single-layer modules (``layers.0``, ``layers.1``, ...), not one
``nn.LSTM(num_layers=depth)``: the gradient monitor groups parameters by the module that owns
them, so a multi-layer ``nn.LSTM`` would be one "layer" and a depth sweep would show nothing.
The monitor reports norms per layer, not per time step; vanishing *through time* shows in the
loss (the adding problem stuck at 1/6) rather than in the layer norms.

The activation axis does not apply (a gated cell's sigmoids and tanh are its definition); the
vanilla RNN has a ``nonlinearity`` knob, ``tanh`` or ``relu`` (Le et al.'s IRNN uses relu).

References:
    Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
    Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
    Machine Translation", https://arxiv.org/abs/1406.1078 (GRU).
    Bengio, Simard & Frasconi, "Learning long-term dependencies with gradient descent is
    difficult", IEEE Trans. Neural Networks 5(2), 1994.
    Le, Jaitly & Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified Linear
    Units", https://arxiv.org/abs/1504.00941.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gradbench.axes.activations import activation_gain
from gradbench.tasks.base import LossFn, TaskConfig, TaskInstance, apply_init
from gradbench.tasks.blocks import mnist1d_data
from gradbench.tasks.datasets import Dataset, make_adding_problem

__all__ = ["RecurrentNet", "CELLS", "build_recurrent"]

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """``depth`` stacked recurrent layers read out at the last time step.

    Layers:

    1. ``layers.0``: RNN / LSTM / GRU (in_features -> width), one layer, batch first
    2. ``layers.1`` .. ``layers.<depth-1>``: the same cell, width -> width
    3. ``head``: Linear(width, out_features) on the last step's hidden state

    With ``bidirectional`` every layer runs both ways (``2 * width`` outputs per step); with
    ``readout="all"`` the head reads every step's outputs, flattened (``length`` steps), as the
    MNIST-1D paper's ``GRUBase`` does, instead of the last step's.

    Inputs are ``[N, T, in_features]``, or ``[N, T]`` for sequences of scalars.

    Args:
        cell: ``rnn`` (Elman), ``lstm`` or ``gru``.
        nonlinearity: The vanilla RNN's, ``tanh`` or ``relu`` (ignored by gated cells).
        bidirectional: Run each layer forwards and backwards.
        readout: ``last`` (the last step's outputs) or ``all`` (every step's, ``length`` of them).
        length: The sequence length, which ``readout="all"`` needs.
    """

    def __init__(
        self, cell: str, in_features: int, out_features: int, *, depth: int, width: int, nonlinearity: str = "tanh",
        bidirectional: bool = False, readout: str = "last", length: int = 1,
    ) -> None:
        super().__init__()
        recurrent_class: Callable[..., nn.Module] = CELLS[cell]
        options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        outputs = 2 * width if bidirectional else width
        self.layers = nn.ModuleList(
            recurrent_class(in_features if index == 0 else outputs, width, num_layers=1, batch_first=True, bidirectional=bidirectional, **options)
            for index in range(depth)
        )
        self.readout = readout
        self.head = nn.Linear(outputs * (length if readout == "all" else 1), out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        for layer in self.layers:
            x, _ = layer(x)
        return self.head(x.flatten(1) if self.readout == "all" else x[:, -1])


def _adding_data(knobs: Mapping[str, Any]) -> Dataset:
    return make_adding_problem(knobs["length"], num_train=knobs["num_train"])


# problem -> (its data from the knobs, inputs per step, outputs, loss, metric)
_PROBLEMS: dict[str, tuple[Callable[[Mapping[str, Any]], Dataset], int, int, LossFn, str]] = {
    "adding": (_adding_data, 2, 1, nn.functional.mse_loss, "loss"),
    "mnist1d": (mnist1d_data, 1, 10, nn.functional.cross_entropy, "accuracy"),
}


def build_recurrent(config: TaskConfig, *, cell: str, problem: str) -> TaskInstance:
    """A recurrent task's model and data (``gradbench.tasks.catalog`` declares the tasks):
    ``cell`` one of ``CELLS``, ``problem`` ``adding`` or ``mnist1d``."""
    load, in_features, out_features, loss_fn, metric = _PROBLEMS[problem]
    knobs = config.knobs
    nonlinearity = knobs.get("nonlinearity", "tanh")
    data = load(knobs)
    model = RecurrentNet(
        cell, in_features, out_features, depth=knobs["depth"], width=knobs["width"], nonlinearity=nonlinearity,
        bidirectional=knobs.get("bidirectional", False), readout=knobs.get("readout", "last"), length=data.x_train.shape[1],
    )
    # Kaiming and orthogonal init take the gain of the recurrence's nonlinearity; a gated
    # cell mixes sigmoids and tanh, and gets gain 1.
    apply_init(model, config, gain=activation_gain(nonlinearity) if cell == "rnn" else 1.0)
    return TaskInstance(model, data, loss_fn, metric=metric, target=knobs["target"])
