"""The selu reproduction: its suite, its smoke run through the CLI, and its measures checked
against values recomputed from the store in plain SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run

from gradbench.grid.expansion import expand
from gradbench.reproduce.catalog import get, suite_of
from gradbench.reproduce.evidence import Evidence
from gradbench.reproduce.papers.selu import NETWORKS, TASK, deepest
from gradbench.store import Store


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("selu"), "selu")


def test_suite_expands_to_three_networks() -> None:
    cells = expand(suite_of(get("selu")))
    assert len(cells) == 3 * 3
    assert {(cell.activation, cell.init) for cell in cells} == set(NETWORKS.items())


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "selu", "SELU + LeCun normal")


@pytest.mark.parametrize("activation", sorted(NETWORKS))
def test_measures_match_the_store(smoke: tuple[Path, int, str], activation: str) -> None:
    db = smoke[0]
    with Store.open(db, readonly=True) as store, sqlite3.connect(db) as plain:
        evidence = Evidence.of_cells(store, expand(suite_of(get("selu"), "smoke")))
        (run,) = evidence.runs(task=TASK, activation=activation)
        (key,) = plain.execute("SELECT key FROM runs WHERE activation = ?", (activation,)).fetchone()
        first, last, top = plain.execute("SELECT min(step), max(step), max(site_index) FROM activation_stats WHERE run_key = ?", (key,)).fetchone()
        assert top == 63 and first < last  # 64 hidden layers, two detailed steps at least
        for when, step in (("init", first), ("trained", last)):
            mean, std = plain.execute("SELECT mean, std FROM activation_stats WHERE run_key = ? AND step = ? AND site_index = ?", (key, step, top)).fetchone()
            assert deepest(evidence, run, when=when, what="mean") == pytest.approx(mean)
            assert deepest(evidence, run, when=when, what="variance") == pytest.approx(std**2)
        claims = {claim.id: claim for claim in get("selu").claims}
        if activation == "selu":
            assert claims["selu_variance_trained"].measure(evidence) == [pytest.approx(deepest(evidence, run, when="trained", what="variance"))]
