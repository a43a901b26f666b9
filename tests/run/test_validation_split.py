"""The opt-in validation split: held out of the training set, deterministic, never trained on,
evaluated with the test set, and invisible in the keys of cells that do not ask for it."""

from __future__ import annotations

import pytest
import torch

from gradbench.grid import Cell, SuiteError, expand, parse_suite
from gradbench.run import prepare, run_cell
from gradbench.tasks.datasets import make_linreg


def suite_of(**axes) -> list[Cell]:
    return expand(parse_suite("").with_overrides(axes))


def test_the_default_leaves_keys_as_they_were():
    (plain,) = suite_of(tasks=["linreg"], steps=[10])
    (zero,) = suite_of(tasks=["linreg"], steps=[10], validation=0)
    (split,) = suite_of(tasks=["linreg"], steps=[10], validation=0.1)
    assert "validation" not in plain.config() and zero.key == plain.key
    # The key this cell had before validation splits existed (gradbench at 08bc80c): a key
    # that changed would make every stored run look new.
    assert plain.key == "8e6d55635c87c6ca"
    assert split.key != plain.key and split.config()["validation"] == 0.1
    assert Cell.from_config(split.config()) == split


@pytest.mark.parametrize("value", [-0.1, 1, 1.5, "0.1", True])
def test_bad_fractions_are_refused(value):
    with pytest.raises(SuiteError, match=r"--validation: invalid validation"):
        suite_of(tasks=["linreg"], validation=value)


def test_a_batch_larger_than_what_the_split_leaves_is_refused():
    # linreg trains on 512 examples; a 0.5 split leaves 256.
    with pytest.raises(SuiteError, match=r"batch size 300 is larger than the training set .* \(256 examples\)"):
        suite_of(tasks=["linreg"], batch_sizes=[300], validation=0.5)


def test_the_split_is_disjoint_deterministic_and_independent_of_the_run_seed():
    data = make_linreg(num_train=100)
    split = data.with_validation(0.2)
    again = data.with_validation(0.2)
    assert split.num_train == 80 and split.x_val.shape[0] == 20
    assert torch.equal(split.x_val, again.x_val) and torch.equal(split.x_train, again.x_train)
    rows = {tuple(row.tolist()) for row in data.x_train}
    train_rows = {tuple(row.tolist()) for row in split.x_train}
    val_rows = {tuple(row.tolist()) for row in split.x_val}
    assert train_rows.isdisjoint(val_rows) and train_rows | val_rows == rows
    with pytest.raises(ValueError, match="between 0 and 1"):
        data.with_validation(0.0)


def test_a_run_trains_without_the_held_out_examples_and_evaluates_them():
    (cell,) = suite_of(tasks=["linreg"], steps=[6], validation=0.25, eval_every=3)
    session = prepare(cell)
    assert session.batches.count == 512 - 128
    result = run_cell(cell)
    assert result.status == "done"
    assert [e.step for e in result.evaluations] == [0, 3, 6]
    assert all(e.validation_loss is not None and e.validation_loss > 0 for e in result.evaluations)
    assert result.metrics()["final_validation_loss"] == result.evaluations[-1].validation_loss
    (plain,) = suite_of(tasks=["linreg"], steps=[6], eval_every=3)
    assert all(e.validation_loss is None for e in run_cell(plain).evaluations)


def test_a_suite_file_sets_it_and_a_bad_value_names_its_line():
    (cell,) = expand(parse_suite('tasks = ["linreg"]\nsteps = 5\nvalidation = 0.25\n', "suite.toml"))
    assert cell.validation == 0.25
    with pytest.raises(SuiteError, match=r"suite.toml, line 2: invalid validation 1.5"):
        expand(parse_suite('tasks = ["linreg"]\nvalidation = 1.5\n', "suite.toml"))
