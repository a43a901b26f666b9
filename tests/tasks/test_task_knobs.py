"""The knobs the literature's protocols need: linear models (depth 0), layers without bias, MSE
on one-hot labels, standardised inputs, a fixed batch order, a chosen test split and MNIST-1D's
shuffled variant. Each checked against an independent computation; at their defaults they
change neither the data nor the cell's key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradbench.grid import expand, parse_suite
from gradbench.run.train import Batches, _build
from gradbench.tasks import TASKS
from gradbench.tasks.base import LOSS_CHOICES
from gradbench.tasks.blocks import classification_loss, one_hot_mse
from gradbench.tasks.datasets import Dataset, load_digits, load_mnist1d

torch.set_num_threads(1)
SMALL = "mnist1d_mlp[num_samples=500,width=16]"


def _cell(task: str, **settings: object):
    (cell,) = expand(parse_suite(f'tasks = ["{task}"]\nsteps = 5').with_overrides(dict(settings)))
    return cell


def test_defaults_leave_every_key_as_it_was():
    spelled = "mnist1d_mlp[bias=true,loss=cross_entropy,standardize=false,test_size=0.2,shuffle_seq=false,order=shuffled]"
    assert _cell(spelled).key == _cell("mnist1d_mlp").key
    assert _cell("digits_mlp[test_size=0.2]").key == _cell("digits_mlp").key
    assert _cell("mnist1d_gru[shuffle_seq=false]").key == _cell("mnist1d_gru").key
    assert _cell("adding_lstm[bidirectional=false,readout=last]").key == _cell("adding_lstm").key
    assert _cell("mnist1d_gru[readout=all]").key != _cell("mnist1d_gru").key
    assert _cell("mnist1d_mlp[depth=0]").key != _cell("mnist1d_mlp").key


def test_depth_zero_is_logistic_regression():
    """One Linear(40, 10) layer under the cross-entropy: multinomial logistic regression."""
    task = _build(_cell(f"{SMALL[:-1]},depth=0]"), torch.device("cpu"))
    (linear,) = [m for m in task.model.modules() if len(list(m.parameters(recurse=False)))]
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (40, 10)
    x, y = task.data.x_train[:32], task.data.y_train[:32]
    logits = x @ linear.weight.T + linear.bias
    expected = -(logits.log_softmax(dim=1)[torch.arange(32), y]).mean()
    assert torch.allclose(task.loss_fn(task.model(x), y), expected)


def test_bias_false_leaves_no_bias_anywhere():
    task = _build(_cell(f"{SMALL[:-1]},depth=3,bias=false]"), torch.device("cpu"))
    assert [name for name, _ in task.model.named_parameters() if "bias" in name] == []
    assert len(list(task.model.parameters())) == 4  # 3 hidden layers and the output layer, weights only


def test_mse_on_one_hot_labels():
    outputs, labels = torch.randn(7, 10), torch.randint(0, 10, (7,))
    one_hot = torch.zeros(7, 10)
    one_hot[torch.arange(7), labels] = 1.0
    assert torch.allclose(one_hot_mse(outputs, labels), ((outputs - one_hot) ** 2).mean())
    task = _build(_cell(f"{SMALL[:-1]},loss=mse]"), torch.device("cpu"))
    assert task.loss_fn(outputs, labels) == one_hot_mse(outputs, labels) and task.metric == "accuracy"


def test_every_loss_the_knob_offers_is_one_the_families_build():
    """The catalog offers the torch-free LOSS_CHOICES; the families build blocks' losses."""
    assert [classification_loss(name) for name in LOSS_CHOICES] == [nn.functional.cross_entropy, one_hot_mse]
    with pytest.raises(ValueError, match=r"invalid loss 'hinge'; choose from: cross_entropy, mse"):
        classification_loss("hinge")


def test_standardize_uses_the_training_statistics_for_every_split():
    raw = _build(_cell("digits_mlp"), torch.device("cpu")).data
    scaled = _build(_cell("digits_mlp[standardize=true]"), torch.device("cpu")).data
    flat_raw, flat = raw.x_train.reshape(raw.num_train, -1).double(), scaled.x_train.reshape(raw.num_train, -1).double()
    varying = flat_raw.std(dim=0) > 0
    assert torch.allclose(flat.mean(dim=0), torch.zeros(64, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(flat.std(dim=0, unbiased=False)[varying], torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-5)
    mean, std = flat_raw.mean(dim=0), flat_raw.std(dim=0, unbiased=False)
    test = ((raw.x_test.reshape(raw.x_test.shape[0], -1).double() - mean) / torch.where(std > 0, std, torch.ones_like(std)))
    assert torch.allclose(scaled.x_test.reshape(test.shape).double(), test, atol=1e-5)


def _batches(order: str, seed: int) -> list[torch.Tensor]:
    x = torch.arange(10.0).unsqueeze(1)
    data = Dataset("ten", x, torch.arange(10), x, torch.arange(10), num_classes=10)
    batches = Batches(data, 3, seed, torch.device("cpu"), order)
    return [batches.next()[1] for _ in range(7)]


def test_fixed_order_takes_the_training_set_in_order_every_epoch_whatever_the_seed():
    fixed = [b.tolist() for b in _batches("fixed", 0)]
    assert fixed == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 1, 2]]  # the last, incomplete batch skipped
    assert [b.tolist() for b in _batches("fixed", 1)] == fixed
    assert [b.tolist() for b in _batches("shuffled", 0)] != [b.tolist() for b in _batches("shuffled", 1)]
    assert _cell("linreg[order=fixed]").task_label == "linreg[order=fixed]"


def test_the_runner_draws_its_batches_in_the_order_the_knob_asks_for():
    """Same seed (same init), two orders: different batches, so different losses."""
    from gradbench.run import run_cell

    losses = {order: run_cell(_cell(f"linreg[order={order}]", seeds=[0])).history.losses for order in ("shuffled", "fixed")}
    assert losses["shuffled"] != losses["fixed"]


def test_test_size_sets_the_split():
    default, custom = load_mnist1d(num_samples=500), load_mnist1d(num_samples=500, test_size=0.3)
    assert (default.num_train, default.x_test.shape[0]) == (400, 100)
    assert (custom.num_train, custom.x_test.shape[0]) == (350, 150)
    assert torch.equal(torch.cat([custom.x_train, custom.x_test]), torch.cat([default.x_train, default.x_test]))  # the same examples
    digits = load_digits(test_size=0.5)
    assert (digits.num_train, digits.x_test.shape[0]) == (898, 899)  # the test set rounded up, as 360 of 1797 at 0.2
    assert load_digits().x_test.shape[0] == 360
    task = TASKS.get("mnist1d_mlp")
    assert task.train_size is not None and task.train_size({"num_samples": 500, "test_size": 0.3}) == 350


def test_shuffle_seq_permutes_the_positions_of_every_signal_the_same_way():
    plain, shuffled = load_mnist1d(num_samples=500), load_mnist1d(num_samples=500, shuffle_seq=True)
    assert torch.equal(plain.y_train, shuffled.y_train) and not torch.equal(plain.x_train, shuffled.x_train)
    # Each shuffled position is one plain position, for every example at once.
    matches = [[j for j in range(40) if torch.allclose(shuffled.x_train[:, i], plain.x_train[:, j])] for i in range(40)]
    assert all(len(found) == 1 for found in matches) and sorted(found[0] for found in matches) == list(range(40))
    assert _cell("mnist1d_cnn[shuffle_seq=true,num_samples=500]").task_label == "mnist1d_cnn[num_samples=500,shuffle_seq=true]"


@pytest.mark.parametrize("knob, value, pattern", [
    ("depth", -1, r"invalid knob depth=-1 for task 'mnist1d_mlp': expected an integer >= 0$"),
    ("loss", "hinge", r"invalid knob loss='hinge' for task 'mnist1d_mlp'; choose from: cross_entropy, mse$"),
    ("test_size", 1.0, r"invalid knob test_size=1.0 for task 'mnist1d_mlp': expected a number >= 0.01 and <= 0.99$"),
    ("order", "random", r"invalid knob order='random' for task 'mnist1d_mlp'; choose from: shuffled, fixed$"),
])
def test_bad_values_of_the_new_knobs_name_the_valid_ones(knob, value, pattern):
    from gradbench.tasks import resolve_knobs

    with pytest.raises(ValueError, match=pattern):
        resolve_knobs("mnist1d_mlp", {knob: value})


def test_standardize_takes_its_statistics_from_the_examples_trained_on_after_the_validation_split():
    task = _build(_cell("digits_mlp[standardize=true]", validation=0.25), torch.device("cpu"))
    flat = task.data.x_train.reshape(task.data.num_train, -1).double()
    varying = flat.std(dim=0) > 1e-9
    assert torch.allclose(flat.mean(dim=0), torch.zeros(64, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(flat.std(dim=0, unbiased=False)[varying], torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-5)
    assert task.data.x_val is not None and abs(float(task.data.x_val.double().mean())) > 1e-4  # the held-out part: its own mean


@pytest.mark.parametrize("spec", ["digits_mlp[test_size=0.99]", "mnist1d_cnn[test_size=0.99,num_samples=100]", "mnist1d_gru[num_samples=100]", "mnist1d_deep_cnn[num_samples=100]"])
def test_a_split_leaving_fewer_examples_than_a_batch_is_refused_up_front(spec):
    from gradbench.grid import SuiteError

    with pytest.raises(SuiteError, match=r"batch size \d+ is larger than the training set of .* \(\d+ examples\)"):
        _cell(spec)
