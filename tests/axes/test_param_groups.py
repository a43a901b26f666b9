"""Tests for the parameter-group splits (gradbench.axes.param_groups) as the runner builds them:
which parameter each group of Muon, its companion and AdamW without decay on biases and norms
holds, for an MLP, a CNN and an RNN task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradbench.axes.combined_optimizer import CombinedOptimizer
from gradbench.axes.optimizers import build_optimizer, resolve_hyperparameters
from gradbench.axes.param_groups import output_layer, split_hidden_matrices
from gradbench.grid import expand, parse_suite
from gradbench.run.train import prepare

torch.set_num_threads(1)

MLP = "digits_mlp[depth=2,width=8,norm=layer]"
CNN = "mnist1d_cnn"
RNN = "adding_lstm[depth=2,width=8]"


def _groups(task: str, optimizer: str) -> list[tuple[str, float, list[str]]]:
    """(inner optimizer class, weight decay, parameter names) for each parameter group."""
    (cell,) = expand(parse_suite(f'tasks = ["{task}"]\noptimizers = ["{optimizer}"]\nsteps = 2\n'))
    session = prepare(cell)
    names = {id(p): name for name, p in session.task.model.named_parameters()}
    inner = session.optimizer.optimizers if isinstance(session.optimizer, CombinedOptimizer) else [session.optimizer]
    return [(type(o).__name__, group["weight_decay"], [names[id(p)] for p in group["params"]]) for o in inner for group in o.param_groups]


MLP_BIASES_AND_NORMS = ["layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.3.bias", "layers.4.weight", "layers.4.bias", "layers.6.bias"]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        # Linear, LayerNorm, activation, x2, then the output Linear (layers.6).
        (MLP, [("Muon", 0.1, ["layers.0.weight", "layers.3.weight"]), ("AdamW", 0.01, [*MLP_BIASES_AND_NORMS[:-1], "layers.6.weight", "layers.6.bias"])]),
        # Its matrices are 3-D kernels and the output layer: Muon has nothing to take.
        (CNN, [("AdamW", 0.01, ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias", "linear.weight", "linear.bias"])]),
        (RNN, [
            ("Muon", 0.1, ["layers.0.weight_ih_l0", "layers.0.weight_hh_l0", "layers.1.weight_ih_l0", "layers.1.weight_hh_l0"]),
            ("AdamW", 0.01, ["layers.0.bias_ih_l0", "layers.0.bias_hh_l0", "layers.1.bias_ih_l0", "layers.1.bias_hh_l0", "head.weight", "head.bias"]),
        ]),
    ],
    ids=["mlp", "cnn", "rnn"],
)
def test_muon_takes_only_hidden_matrices_and_its_companion_the_rest(task, expected):
    assert _groups(task, "muon") == expected


def test_no_decay_on_bias_and_norm_splits_the_companion_too():
    assert _groups(MLP, "muon[no_decay_on_bias_and_norm=true]") == [
        ("Muon", 0.1, ["layers.0.weight", "layers.3.weight"]),
        ("AdamW", 0.01, ["layers.6.weight"]),
        ("AdamW", 0.0, MLP_BIASES_AND_NORMS),
    ]


@pytest.mark.parametrize(
    ("task", "decayed", "exempt"),
    [
        (MLP, ["layers.0.weight", "layers.3.weight", "layers.6.weight"], MLP_BIASES_AND_NORMS),
        (CNN, ["conv1.weight", "conv2.weight", "conv3.weight", "linear.weight"], ["conv1.bias", "conv2.bias", "conv3.bias", "linear.bias"]),
        (RNN, ["layers.0.weight_ih_l0", "layers.0.weight_hh_l0", "layers.1.weight_ih_l0", "layers.1.weight_hh_l0", "head.weight"],
         ["layers.0.bias_ih_l0", "layers.0.bias_hh_l0", "layers.1.bias_ih_l0", "layers.1.bias_hh_l0", "head.bias"]),
    ],
    ids=["mlp", "cnn", "rnn"],
)
def test_adamw_without_decay_on_bias_and_norm(task, decayed, exempt):
    assert _groups(task, "adamw[no_decay_on_bias_and_norm=true]") == [("AdamW", 0.01, decayed), ("AdamW", 0.0, exempt)]
    assert _groups(task, "adamw") == [("AdamW", 0.01, [name for name in _all_names(task)])]


def _all_names(task: str) -> list[str]:
    (cell,) = expand(parse_suite(f'tasks = ["{task}"]\nsteps = 2\n'))
    return [name for name, _ in prepare(cell).task.model.named_parameters()]


def test_companion_and_its_lr_are_options():
    (_, _, companion), = [g for g in _groups(MLP, "muon[companion=sgd,companion_lr=0.5]") if g[0] == "SGD"] or [(None, None, None)]
    assert "layers.6.weight" in companion
    (cell,) = expand(parse_suite(f'tasks = ["{MLP}"]\noptimizers = ["muon[companion=sgd,companion_lr=0.5,lr=0.02]"]\nsteps = 2\n'))
    optimizer = prepare(cell).optimizer
    assert [group["lr"] for group in optimizer.param_groups] == [0.02, 0.5]
    (cell,) = expand(parse_suite(f'tasks = ["{MLP}"]\noptimizers = ["muon[lr=0.02]"]\nsteps = 2\n'))
    assert [group["lr"] for group in prepare(cell).optimizer.param_groups] == [0.02, 0.02]  # by default the companion follows


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"companion": "muon"}, r"invalid muon option companion='muon'; choose from: sgd, momentum"),
        ({"companion": "lbfgs"}, r"choose from"),
        ({"companion_lr": -1.0}, r"companion_lr=-1.0: expected a positive number"),
        ({"no_decay_on_bias_and_norm": 1}, r"expected true or false"),
    ],
)
def test_bad_options_are_one_line(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_hyperparameters("muon", overrides)


def test_options_only_where_they_apply():
    with pytest.raises(ValueError, match="optimizer 'adam' has no option 'companion'"):
        resolve_hyperparameters("adam", {"companion": "adamw"})
    with pytest.raises(ValueError, match="optimizer 'adadelta' has no option|has no option 'no_decay_on_bias_and_norm'"):
        resolve_hyperparameters("lbfgs", {"no_decay_on_bias_and_norm": True})


def test_a_scheduler_reaches_both_halves():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    optimizer = build_optimizer("muon", model, resolve_hyperparameters("muon", {"lr": 0.1}))
    assert isinstance(optimizer, CombinedOptimizer)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    assert [group["lr"] for inner in optimizer.optimizers for group in inner.param_groups] == [0.05, 0.05]
    assert len(optimizer.state) == 4  # Muon's momentum for 1 matrix, AdamW's state for 3 tensors


class _HeadFirst(nn.Module):
    """A model whose output layer is defined before its hidden layer: it must say so."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.hidden = nn.Linear(4, 4)
        self.output_layer = self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(x)))


def test_a_model_may_name_its_output_layer():
    model = _HeadFirst()
    assert output_layer(model) is model.head
    assert split_hidden_matrices(model).chosen_names == ["hidden.weight"]
    del model.output_layer
    assert output_layer(model) is model.hidden  # without it: the last layer defined


def test_the_monitor_sees_both_halves_update():
    """The monitor's step hooks are on the combined optimizer: the update ratio of every layer,
    the companion's output layer included, is measured around one step of both."""
    from gradbench.run.train import run_cell

    (cell,) = expand(parse_suite(f'tasks = ["{MLP}"]\noptimizers = ["muon"]\nsteps = 10\nrecord_every = 5\ndetail_every = 10\n'))
    result = run_cell(cell)
    assert result.status == "done", result.error
    assert result.history is not None
    (ratios,) = [row for row in result.history.layer_update_ratios if row is not None]
    assert len(ratios) == len(result.history.layer_names) and all(ratio > 0 for ratio in ratios)


def test_the_combined_state_reads_each_parameter_from_its_owner_and_round_trips():
    """A plain ChainMap over defaultdicts created an empty entry in Muon's state for every
    companion parameter looked up, hiding AdamW's moments: the state-size count missed them
    and Muon's own state_dict raised KeyError."""
    from gradbench.run.memory import optimizer_state_bytes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    combined = build_optimizer("muon", model, resolve_hyperparameters("muon", {}))
    model(torch.randn(4, 8)).sum().backward()
    combined.step()
    inner = combined.optimizers
    sizes = [len(optimizer.state) for optimizer in inner]
    assert optimizer_state_bytes(combined, model.parameters()) == sum(optimizer_state_bytes(o, model.parameters()) for o in inner) > 0
    assert [len(optimizer.state) for optimizer in inner] == sizes  # nothing created by reading
    for parameter in model.parameters():
        assert combined.state[parameter] is next(o.state[parameter] for o in inner if parameter in o.state)
    saved = combined.state_dict()
    inner[0].state_dict()  # raised KeyError on a foreign entry
    combined.state.clear()
    assert all(not optimizer.state for optimizer in inner)
    combined.load_state_dict(saved)
    assert [len(optimizer.state) for optimizer in inner] == sizes
    combined.param_groups[-1]["lr"] = 0.5  # a scheduler's write still reaches the inner optimizer
    assert inner[-1].param_groups[-1]["lr"] == 0.5
