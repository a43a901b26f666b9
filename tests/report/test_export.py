"""Results you can load: ``gradbench export --what evaluations|steps`` (CSV, JSON, Parquet) and
``gradbench.Results``, each checked against the values read straight from SQLite."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sqlite3
import sys

import pytest
from report_store import run_cli

import gradbench
from gradbench.report import results as results_module


def _sql(db, query: str) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def _number(text: str):
    return None if text == "" else float(text)


@pytest.mark.parametrize("what, query", [
    ("evaluations", "SELECT run_key, step, train_loss, test_loss, test_accuracy, train_time_s, validation_loss, validation_accuracy, lr FROM evaluations ORDER BY run_key, step"),
    ("steps", "SELECT run_key, step, loss, step_time_s, step_cpu_s, loss_scale, skipped FROM steps ORDER BY run_key, step"),
])
def test_export_evaluations_and_steps_round_trip_in_csv_and_json(report_db, what, query):
    expected = _sql(report_db, query)
    columns = query.split("SELECT ", 1)[1].split(" FROM", 1)[0].split(", ")
    assert len(expected) > 100
    code, out, err = run_cli("export", "--db", str(report_db), "--what", what)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(expected)
    for row, values in zip(rows, expected):
        assert row["run_key"] == values[0] and int(row["step"]) == values[1]
        for name, value in zip(columns[2:], values[2:]):
            assert _number(row[name]) == value, name  # repr of a float reads back exactly
    code, out, _ = run_cli("export", "--db", str(report_db), "--what", what, "--format", "json")
    decoded = json.loads(out)
    assert [tuple(row[name] for name in columns) for row in decoded] == expected


def test_parquet_without_pyarrow_is_one_line_exit_2_and_writes_nothing(report_db, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    output = tmp_path / "e.parquet"
    code, out, err = run_cli("export", "--db", str(report_db), "--what", "evaluations", "--format", "parquet", "-o", str(output))
    assert code == 2 and out == "" and err.count("\n") == 1 and "pip install pyarrow" in err
    assert not output.exists()
    code, _, err = run_cli("export", "--db", str(report_db), "--what", "evaluations", "--format", "parquet")  # binary: no stdout
    assert code == 2 and err.count("\n") == 1 and "--output" in err


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed (pip install 'gradbench[parquet]')")
def test_parquet_round_trips(report_db, tmp_path):
    import pyarrow.parquet

    output = tmp_path / "e.parquet"
    code, _, err = run_cli("export", "--db", str(report_db), "--what", "steps", "--format", "parquet", "-o", str(output))
    assert code == 0, err
    table = pyarrow.parquet.read_table(output).to_pylist()
    expected = _sql(report_db, "SELECT run_key, step, loss FROM steps ORDER BY run_key, step")
    assert [(r["run_key"], r["step"], r["loss"]) for r in table] == expected


def test_bad_export_choices_are_one_line_exit_2(report_db, tmp_path):
    output = tmp_path / "x.csv"
    for args in (("--what", "curves"), ("--what", "steps", "--format", "xlsx")):
        code, out, err = run_cli("export", "--db", str(report_db), *args, "-o", str(output))
        assert code == 2 and out == "" and err.count("\n") == 1 and not output.exists()


@pytest.fixture
def pandas():
    return pytest.importorskip("pandas", reason="pandas is not installed (the dev extra installs it)")


def test_results_runs_has_one_row_per_run_with_the_configuration_as_columns(report_db, pandas):
    runs = gradbench.Results(report_db).runs()
    expected = _sql(report_db, "SELECT key, optimizer, lr, activation, clip, seed, status, final_train_loss, final_test_accuracy FROM runs")
    assert len(runs) == len(expected) and runs["key"].is_unique
    for name in ("optimizer", "lr", "activation", "clip", "seed", "status", "final_train_loss", "final_test_accuracy", "task", "steps", "batch_size"):
        assert name in runs.columns, name
    by_key = runs.set_index("key")
    for key, optimizer, lr, activation, clip, seed, status, loss, accuracy in expected:
        row = by_key.loc[key]
        assert (row["optimizer"], row["lr"], row["clip"], row["seed"], row["status"]) == (optimizer, lr, clip, seed, status)
        assert (row["activation"] if isinstance(row["activation"], str) else None) == activation
        assert row["final_train_loss"] == loss
        assert (accuracy is None and pandas.isna(row["final_test_accuracy"])) or row["final_test_accuracy"] == accuracy


def test_results_curves_carry_the_runs_axes(report_db, pandas):
    results = gradbench.Results(report_db)
    evaluations = results.evaluations()
    expected = _sql(report_db, "SELECT e.run_key, e.step, e.train_loss, r.optimizer, r.lr FROM evaluations e JOIN runs r ON r.key = e.run_key ORDER BY e.run_key, e.step")
    got = list(evaluations[["run_key", "step", "train_loss", "optimizer", "lr"]].itertuples(index=False, name=None))
    assert got == expected
    assert "evaluation_lr" in evaluations.columns  # the lr at each evaluation, beside the run's lr
    steps = results.steps()
    assert len(steps) == _sql(report_db, "SELECT COUNT(*) FROM steps")[0][0] and {"optimizer", "seed"} <= set(steps.columns)
    assert len(results.layers()) > 0 and len(results.activations()) > 0


def test_results_without_pandas_names_the_extra(report_db, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'gradbench\[pandas\]'"):
        results_module.Results(report_db).runs()
