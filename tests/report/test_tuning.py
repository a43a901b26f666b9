"""Tuned mode: each configuration keeps its best learning rate on the validation metric, never
on the test metric; diverged learning rates never win unless all diverged; ties go to the
smaller learning rate. The cases are crafted rows in a copy of the small store, built so that
the validation metric and the test metric disagree."""

from __future__ import annotations

import csv
import io

import pytest
from report_store import copy_store, run_cli

from gradbench.report import tune
from gradbench.store import Store

MLP = "task LIKE 'mnist1d_mlp%' AND clip = 'none'"


def _set(connection, where: str, **values) -> None:
    assignments = ", ".join(f"{name} = ?" for name in values)
    count = connection.execute(f"UPDATE runs SET {assignments} WHERE {MLP} AND {where}", tuple(values.values())).rowcount
    assert count > 0, where


def craft(connection) -> None:
    # adam/sigmoid: lr 0.01 is best on validation, lr 0.1 on test accuracy and train loss.
    _set(connection, "optimizer = 'adam' AND activation = 'sigmoid' AND lr = 0.01", final_validation_loss=0.5, final_test_accuracy=0.30, final_train_loss=0.9)
    _set(connection, "optimizer = 'adam' AND activation = 'sigmoid' AND lr = 0.1", final_validation_loss=0.9, final_test_accuracy=0.80, final_train_loss=0.1)
    # adam/relu: lr 0.1 has the best validation loss on its done seed, but its other seed diverged.
    _set(connection, "optimizer = 'adam' AND activation = 'relu' AND lr = 0.01", final_validation_loss=0.7)
    _set(connection, "optimizer = 'adam' AND activation = 'relu' AND lr = 0.1", final_validation_loss=0.01)
    _set(connection, "optimizer = 'adam' AND activation = 'relu' AND lr = 0.1 AND seed = 0", status="diverged", final_validation_loss=None, nonfinite_step=3)
    # sgd/sigmoid: every run diverged; lr 0.01 lasted longer.
    _set(connection, "optimizer = 'sgd' AND activation = 'sigmoid'", status="diverged", final_validation_loss=None)
    _set(connection, "optimizer = 'sgd' AND activation = 'sigmoid' AND lr = 0.01", steps_run=10)
    _set(connection, "optimizer = 'sgd' AND activation = 'sigmoid' AND lr = 0.1", steps_run=5)
    # sgd/relu: a tie.
    _set(connection, "optimizer = 'sgd' AND activation = 'relu'", final_validation_loss=1.25)


@pytest.fixture(scope="module")
def crafted(report_db, tmp_path_factory):
    return copy_store(report_db, tmp_path_factory.mktemp("tuned") / "crafted.db", craft)


def tuned_cells(db, *args: str) -> dict[tuple[str, str], dict]:
    code, out, err = run_cli("report", "--db", str(db), "--tuned", "--format", "csv", "--where", "task=mnist1d_mlp", "--where", "clip=none", *args)
    assert code == 0, err
    return {(r["optimizer"], r["activation"]): r for r in csv.DictReader(io.StringIO(out))}


def test_tuned_mode_picks_the_best_validation_lr_not_the_best_test_lr(crafted):
    cells = tuned_cells(crafted, "--metric", "test_accuracy")
    assert cells[("adam", "sigmoid")]["tuned_lr"] == "0.01"
    assert float(cells[("adam", "sigmoid")]["mean"]) == pytest.approx(30.0)  # the chosen lr's test accuracy, in percent
    assert cells[("adam", "relu")]["tuned_lr"] == "0.01"  # the diverged lr never wins
    assert cells[("sgd", "sigmoid")]["tuned_lr"] == "0.01"  # all diverged: the one that lasted longest
    assert cells[("sgd", "sigmoid")]["diverged"] == "2" and cells[("sgd", "sigmoid")]["mean"] == ""
    assert cells[("sgd", "relu")]["tuned_lr"] == "0.01"  # a tie: the smaller lr


def test_the_chosen_lr_appears_in_the_markdown_table(crafted):
    code, out, _ = run_cli("report", "--db", str(crafted), "--tuned", "--metric", "test_accuracy", "--where", "task=mnist1d_mlp", "--where", "clip=none")
    assert code == 0
    assert "| adam | 30.0 ± 0.0 [30.0, 30.0] (n=2; lr=0.01) |" in out  # alone in its column (sgd diverged): not bold
    assert "| sgd | diverged (lr=0.01) |" in out
    assert "learning rate tuned per configuration on the final validation loss" in out


def test_tuning_on_the_train_loss_is_explicit_and_labelled(crafted):
    cells = tuned_cells(crafted, "--metric", "test_accuracy", "--tune-on", "train_loss")
    assert cells[("adam", "sigmoid")]["tuned_lr"] == "0.1"
    code, out, _ = run_cli("report", "--db", str(crafted), "--tuned", "--tune-on", "train_loss", "--where", "task=mnist1d_mlp")
    assert "tuned per configuration on the final TRAIN loss (no validation split)" in out


def test_tuning_on_validation_accuracy_prefers_the_higher(crafted, tmp_path):
    def edit(connection):
        _set(connection, "optimizer = 'adam' AND activation = 'sigmoid' AND lr = 0.01", final_validation_accuracy=0.2)
        _set(connection, "optimizer = 'adam' AND activation = 'sigmoid' AND lr = 0.1", final_validation_accuracy=0.6)

    db = copy_store(crafted, tmp_path / "accuracy.db", edit)
    assert tuned_cells(db, "--tune-on", "validation_accuracy")[("adam", "sigmoid")]["tuned_lr"] == "0.1"


def test_the_candidates_are_each_lrs_mean_over_seeds(crafted):
    with Store.open(crafted, readonly=True) as store:
        runs = [r for r in store.runs() if r["task"].startswith("mnist1d_mlp") and r["clip"] == "none"]
    tuned = tune(runs)
    scores = [c for c in tuned.candidates.values() if sorted(c.values(), key=str) == sorted([0.5, 0.9], key=str)]
    assert len(scores) == 1 and scores[0] == {0.01: 0.5, 0.1: 0.9}
    assert len(tuned.runs) == len(runs) // 2  # one lr of two kept, both seeds


def test_tuned_mode_refuses_runs_without_a_validation_split(tmp_path):
    db = tmp_path / "plain.db"
    code, _, err = run_cli("run", "--task", "linreg", "--lr", "0.01,0.1", "--steps", "5", "--db", str(db), "--no-progress")
    assert code == 0, err
    code, out, err = run_cli("report", "--db", str(db), "--tuned")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "rerun them with --validation 0.1" in err and "--tune-on train_loss" in err
    code, out, _ = run_cli("report", "--db", str(db), "--tuned", "--tune-on", "train_loss")
    assert code == 0 and "TRAIN loss" in out


def test_different_chosen_lrs_stay_in_one_table(crafted, tmp_path):
    def edit(connection):
        _set(connection, "optimizer = 'adam' AND activation = 'sigmoid' AND lr = 0.1", final_validation_loss=0.1)

    db = copy_store(crafted, tmp_path / "mixed.db", edit)
    code, out, _ = run_cli("report", "--db", str(db), "--tuned", "--metric", "test_accuracy", "--where", "task=mnist1d_mlp", "--where", "clip=none")
    assert code == 0
    assert out.count("### ") == 1 and "lr=0.1)" in out and "lr=0.01)" in out
    assert "All runs: lr" not in out


def test_a_tuning_metric_a_task_never_has_is_an_error_not_a_fallback(crafted):
    # linreg is a regression task: no accuracy, so there is nothing to tune on (it used to keep
    # the smallest lr through the "lasted longest" tie rule).
    code, out, err = run_cli("report", "--db", str(crafted), "--tuned", "--tune-on", "validation_accuracy")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "'linreg' has no validation accuracy" in err and "validation_loss, train_loss" in err
    assert "Traceback" not in err
    code, _, err = run_cli("plot", "curves", "--db", str(crafted), "--tuned", "--tune-on", "validation_accuracy", "--output", str(crafted.parent / "x.png"))
    assert code == 2 and "'linreg' has no validation accuracy" in err and not (crafted.parent / "x.png").exists()
