"""The he_init reproduction: its suite, its smoke run through the CLI, and its measures checked
against values recomputed from the store in plain SQLite."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run

from gradbench.grid.expansion import expand
from gradbench.reproduce.catalog import get, suite_of
from gradbench.reproduce.evidence import Evidence
from gradbench.reproduce.papers.he_init import TASKS, loss_fraction, steps_below
from gradbench.store import Store


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("he_init"), "he_init")


def test_suite_expands_to_both_depths_and_inits() -> None:
    cells = expand(suite_of(get("he_init")))
    assert len(cells) == 2 * 2 * 3
    assert {cell.init for cell in cells} == {"kaiming_normal", "xavier_normal"}
    assert {cell.seed for cell in cells} == {0, 1, 2}


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "he_init", "30 layers, Xavier")


def test_measures_match_the_store(smoke: tuple[Path, int, str]) -> None:
    db = smoke[0]
    with Store.open(db, readonly=True) as store:
        evidence = Evidence.of_cells(store, expand(suite_of(get("he_init"), "smoke")))
        runs = evidence.runs(task=TASKS[30], init="xavier_normal")
        assert len(runs) == 1
        run = runs[0]
        key = run["key"]
        with sqlite3.connect(db) as plain:
            final, chance, steps = plain.execute("SELECT final_train_loss, chance_loss, steps FROM runs WHERE key = ?", (key,)).fetchone()
            curve = plain.execute("SELECT step, train_loss FROM evaluations WHERE run_key = ? ORDER BY step", (key,)).fetchall()
        assert loss_fraction(run) == pytest.approx(100 * final / chance)
        for fraction in (0.5, 0.999, 1.001, 2.0):
            expected = next((step for step, loss in curve if loss < fraction * chance), steps)
            assert steps_below(evidence, run, fraction) == expected
        measured = {claim.id: claim.measure(evidence) for claim in get("he_init").claims}
        assert measured["30_xavier_stalls"] == [pytest.approx(100 * final / chance)]


def test_loss_fraction_without_a_final_loss_is_nan() -> None:
    assert math.isnan(loss_fraction({"final_train_loss": None, "chance_loss": 2.3}))
    assert loss_fraction({"final_train_loss": 1.15, "chance_loss": 2.3}) == pytest.approx(50.0)
