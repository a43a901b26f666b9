"""The article reproduction (the founding article's claims as the README states them): its
suite loads, its smoke size runs end to end through the CLI, and each measure gives the number
recomputed in plain SQLite from the same store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run, sql, tiny_run

from gradbench.reproduce import catalog
from gradbench.reproduce.evidence import Evidence
from gradbench.reproduce.papers import article

# The suite shrunk to seconds: 30 steps (GD's grid too), an evaluation every 5, two seeds.
TINY = {"steps": [30], "seeds": [0, 1], "eval_every": 5}


def test_the_suite_loads_and_expands_to_the_default_suites_cells_with_three_seeds():
    from gradbench.grid.expansion import expand

    cells = expand(catalog.suite_of(catalog.get("article")))
    assert len(cells) == 10 * 3 and {cell.seed for cell in cells} == {0, 1, 2}
    assert {cell.steps for cell in cells if cell.optimizer == "gd"} == {300}
    smoke = expand(catalog.suite_of(catalog.get("article"), "smoke"))
    assert len(smoke) == 10 and {cell.steps for cell in smoke} == {20}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("article"), "article")


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "article", "(b) SGD's training loss minus full-batch GD's")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Evidence]:
    return tiny_run(tmp_path_factory.mktemp("article"), "article", TINY)


def _claim(claim_id: str):
    return next(claim for claim in article.REPRODUCTION.claims if claim.id == claim_id)


def _runs(db: Path, condition: str) -> list[tuple]:
    """(key, status, final accuracy, grad ratio, final train loss) by seed, for a SQL condition."""
    return sql(db, f"SELECT key, status, final_test_accuracy, grad_ratio_first_last, final_train_loss FROM runs WHERE {condition} ORDER BY seed")


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


_CPU_CLOCK = "(SELECT COALESCE(SUM(s.step_cpu_s), 0) FROM steps AS s WHERE s.run_key = e.run_key AND s.step <= e.step)"


def _sql_equal_time(db: Path, sgd: str, gd: str, column: str) -> float:
    """The same comparison in SQL: each evaluation's clock is the CPU seconds of the steps up to it."""
    (time_sgd,), (time_gd,) = (sql(db, f"SELECT MAX({_CPU_CLOCK}) FROM evaluations AS e WHERE e.run_key = ?", key)[0] for key in (sgd, gd))
    seconds = min(time_sgd, time_gd)
    values = [
        sql(db, f"SELECT {column} FROM evaluations AS e WHERE e.run_key = ? AND {_CPU_CLOCK} <= ? ORDER BY e.step DESC LIMIT 1", key, seconds + 1e-12)[0][0]
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
    rows = [{"clock": 0.0, "v": 0}, {"clock": 1.0, "v": 1}, {"clock": 2.0, "v": 2}]
    assert article.at_time(rows, 1.0)["v"] == 1 and article.at_time(rows, 1.9)["v"] == 1 and article.at_time(rows, 5)["v"] == 2


def test_the_figure_draws_four_panels(tiny_store):
    _, evidence = tiny_store
    figure = article.figure(evidence)
    assert len(figure.axes) == 4 and len(figure.axes[3].lines) == 5  # four optimizers and the chance line


def test_the_clock_is_the_cpu_time_of_the_steps_up_to_each_evaluation(tiny_store):
    db, evidence = tiny_store
    for run in evidence.runs(optimizer="gd") + evidence.runs(**article.RELU_HE):
        expected = sql(db, f"SELECT e.step, {_CPU_CLOCK} FROM evaluations AS e WHERE e.run_key = ? ORDER BY e.step", run["key"])
        clocked = article.clocked_evaluations(evidence, run)
        assert [(row["step"], row["clock"]) for row in clocked] == [(step, pytest.approx(seconds, abs=1e-12)) for step, seconds in expected]
        assert clocked[-1]["clock"] != pytest.approx(clocked[-1]["train_time_s"], rel=1e-9)  # not the wall time it replaces
