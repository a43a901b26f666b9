"""The article reproduction (the founding article's claims as the README states them): its
suite loads, its smoke size runs end to end through the CLI, and each measure gives the number
recomputed in plain SQLite from the same store."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from gradbench.cli import main
from gradbench.reproduce import catalog
from gradbench.reproduce.evidence import Evidence
from gradbench.reproduce.papers import article
from gradbench.store.database import Store

# The suite shrunk to seconds: 30 steps (GD's grid too), an evaluation every 5, two seeds.
TINY = {"steps": [30], "seeds": [0, 1], "eval_every": 5}


def test_the_suite_loads_and_expands_to_the_default_suites_cells_with_three_seeds():
    from gradbench.grid.expansion import expand

    cells = expand(catalog.suite_of(catalog.get("article")))
    assert len(cells) == 10 * 3 and {cell.seed for cell in cells} == {0, 1, 2}
    assert {cell.steps for cell in cells if cell.optimizer == "gd"} == {300}
    smoke = expand(catalog.suite_of(catalog.get("article"), "smoke"))
    assert len(smoke) == 10 and {cell.steps for cell in smoke} == {20}


def test_smoke_runs_end_to_end_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["reproduce", "article", "--smoke", "--db", str(tmp_path / "s.db"), "--output", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "| claim | published |" in out and "(b) SGD's training loss minus full-batch GD's" in out
    assert (tmp_path / "out" / "article.smoke.md").is_file() and (tmp_path / "out" / "article.smoke.png").is_file()


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> tuple[Path, Evidence]:
    from gradbench.grid.expansion import expand
    from gradbench.sweep.driver import run_sweep

    db = tmp_path_factory.mktemp("article") / "article.db"
    cells = expand(catalog.suite_of(catalog.get("article")).with_overrides(TINY))
    with Store.open(db, create=True) as store:
        run_sweep(cells, store, progress=False)
    store = Store.open(db, readonly=True)
    return db, Evidence.of_cells(store, cells)


def _sql(db: Path, query: str, *args) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query, args).fetchall()
    finally:
        connection.close()


def _claim(claim_id: str):
    return next(claim for claim in article.REPRODUCTION.claims if claim.id == claim_id)


def _runs(db: Path, condition: str) -> list[tuple]:
    """(key, status, final accuracy, grad ratio, final train loss) by seed, for a SQL condition."""
    return _sql(db, f"SELECT key, status, final_test_accuracy, grad_ratio_first_last, final_train_loss FROM runs WHERE {condition} ORDER BY seed")


SIGMOID_SGD = "optimizer = 'sgd' AND activation = 'sigmoid' AND clip = 'none'"
RELU_HE = "optimizer = 'sgd' AND activation = 'relu' AND init = 'kaiming_normal' AND lr = 0.1 AND clip = 'none'"


def test_final_metrics_and_gradient_ratios_are_read_from_the_right_runs(tiny_store):
    db, evidence = tiny_store
    sigmoid = _runs(db, SIGMOID_SGD)
    assert _claim("sigmoid_sgd_accuracy").measure(evidence) == pytest.approx([100 * row[2] for row in sigmoid])
    assert _claim("sigmoid_sgd_loss").measure(evidence) == pytest.approx([row[4] for row in sigmoid])
    assert _claim("sigmoid_vanishing").measure(evidence) == pytest.approx([math.log10(row[3]) for row in sigmoid])
    relu = _runs(db, RELU_HE)
    assert _claim("relu_he_ratio").measure(evidence) == pytest.approx([math.log10(row[3]) for row in relu])
    adagrad = _runs(db, "optimizer = 'adagrad'")
    assert _claim("adagrad_sigmoid_accuracy").measure(evidence) == pytest.approx([100 * row[2] for row in adagrad])
    clipped = _runs(db, "optimizer = 'sgd' AND lr = 1.0 AND clip = 'norm:1'")
    assert _claim("large_lr_clipped_accuracy").measure(evidence) == pytest.approx([100 * row[2] for row in clipped])


def test_a_run_fails_to_train_when_it_diverges_or_ends_near_chance():
    assert article.failed_to_train({"status": "diverged", "final_test_accuracy": 0.5}) == 1.0
    assert article.failed_to_train({"status": "done", "final_test_accuracy": None}) == 1.0
    assert article.failed_to_train({"status": "done", "final_test_accuracy": 0.15}) == 1.0
    assert article.failed_to_train({"status": "done", "final_test_accuracy": 0.151}) == 0.0


def _sql_equal_time(db: Path, sgd: str, gd: str, column: str) -> float:
    (time_sgd,), (time_gd,) = (_sql(db, "SELECT MAX(train_time_s) FROM evaluations WHERE run_key = ?", key)[0] for key in (sgd, gd))
    seconds = min(time_sgd, time_gd)
    values = [
        _sql(db, f"SELECT {column} FROM evaluations WHERE run_key = ? AND train_time_s <= ? ORDER BY train_time_s DESC LIMIT 1", key, seconds)[0][0]
        for key in (sgd, gd)
    ]
    return values[0] - values[1]


def test_sgd_and_gd_are_compared_at_the_training_time_both_reached(tiny_store):
    db, evidence = tiny_store
    pairs = zip([row[0] for row in _runs(db, RELU_HE)], [row[0] for row in _runs(db, "optimizer = 'gd'")])
    pairs = list(pairs)
    expected_loss = [_sql_equal_time(db, sgd, gd, "train_loss") for sgd, gd in pairs]
    expected_accuracy = [100 * _sql_equal_time(db, sgd, gd, "test_accuracy") for sgd, gd in pairs]
    assert _claim("sgd_vs_gd_loss").measure(evidence) == pytest.approx(expected_loss)
    assert _claim("sgd_vs_gd_accuracy").measure(evidence) == pytest.approx(expected_accuracy)


def test_at_time_takes_the_last_evaluation_within_the_time():
    rows = [{"train_time_s": 0.0, "v": 0}, {"train_time_s": 1.0, "v": 1}, {"train_time_s": 2.0, "v": 2}]
    assert article.at_time(rows, 1.0)["v"] == 1 and article.at_time(rows, 1.9)["v"] == 1 and article.at_time(rows, 5)["v"] == 2


def test_the_figure_draws_four_panels(tiny_store):
    _, evidence = tiny_store
    figure = article.figure(evidence)
    assert len(figure.axes) == 4 and len(figure.axes[3].lines) == 5  # four optimizers and the chance line
