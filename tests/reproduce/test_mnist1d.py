"""The MNIST-1D reproduction: its suite is the paper's set-up, the smoke size runs through the CLI,
and its measures (best test accuracy over the evaluations, the shuffling drop) read the right
numbers from a store, checked against plain SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run

from gradbench.grid.expansion import expand
from gradbench.reproduce import catalog
from gradbench.reproduce.evidence import open_evidence
from gradbench.reproduce.papers import mnist1d


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("mnist1d"), "mnist1d")


def _cells(size: str = "default"):
    return expand(catalog.suite_of(catalog.get("mnist1d"), size))


def test_suite_is_the_papers_set_up():
    cells = _cells()
    assert len(cells) == 4 * 2 * 3  # four models, regular and shuffled inputs, three seeds
    assert {cell.optimizer for cell in cells} == {"adam"}
    assert {cell.steps for cell in cells} == {6000} and {cell.batch_size for cell in cells} == {100}
    assert {cell.seed for cell in cells} == {0, 1, 2}
    knobs = [dict(cell.task_knobs) for cell in cells]
    assert sum(k.get("shuffle_seq", False) for k in knobs) == 12 and all(k["order"] == "fixed" for k in knobs)
    gru = [k for cell, k in zip(cells, knobs) if cell.task == "mnist1d_gru"]
    assert gru and all((k["width"], k["bidirectional"], k["readout"]) == (6, True, "all") for k in gru)
    assert len({cell.key for cell in cells}) == len(cells)


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "mnist1d", "Table 1, row MNIST-1D (shuffled)")


def _sql_best(db: Path) -> dict[tuple[str, int], float]:
    """(task label, seed) -> 100 x the best test accuracy over the run's evaluations, in SQL."""
    connection = sqlite3.connect(db)
    rows = connection.execute(
        "SELECT runs.task, runs.seed, MAX(evaluations.test_accuracy) FROM runs JOIN evaluations ON evaluations.run_key = runs.key "
        "WHERE runs.optimizer = 'adam' AND runs.task LIKE 'mnist1d%' GROUP BY runs.key"
    ).fetchall()
    connection.close()
    return {(task, seed): 100 * best for task, seed, best in rows}


def test_measures_read_the_best_accuracy_and_the_drop(smoke):
    db, _, _ = smoke
    expected = _sql_best(db)
    store, evidence = open_evidence(db, _cells("smoke"))
    try:
        claims = {claim.id: claim for claim in mnist1d.REPRODUCTION.claims}
        cnn = claims["cnn"].measure(evidence)
        cnn_shuffled = claims["cnn_shuffled"].measure(evidence)
        assert cnn == pytest.approx([expected[("mnist1d_cnn[order=fixed]", 0)]])
        assert cnn_shuffled == pytest.approx([expected[("mnist1d_cnn[order=fixed,shuffle_seq=true]", 0)]])
        assert claims["cnn_shuffle_drop"].measure(evidence) == pytest.approx([cnn[0] - cnn_shuffled[0]])
        gru = "mnist1d_gru[bidirectional=true,order=fixed,readout=all,width=6]"
        assert claims["gru"].measure(evidence) == pytest.approx([expected[(gru, 0)]])
        assert claims["logistic"].measure(evidence) == pytest.approx([expected[("mnist1d_mlp[depth=0,order=fixed]", 0)]])
    finally:
        store.close()


def test_bands_are_the_printed_value_plus_minus_three_paper_stds():
    claims = {claim.id: claim for claim in mnist1d.REPRODUCTION.claims}
    assert (claims["cnn"].band.low, claims["cnn"].band.high) == (88.0, 100.0)
    assert (claims["gru_shuffled"].band.low, claims["gru_shuffled"].band.high) == (51.0, 63.0)
    assert (claims["logistic"].band.low, claims["logistic"].band.high) == (29.0, 35.0)
    assert claims["mlp_shuffle_drop"].published.value == 0.0 and claims["cnn_shuffle_drop"].published.value == 38.0
