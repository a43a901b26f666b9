"""The glorot_bengio reproduction: its suite, its smoke run through the CLI, and its measures
checked against values recomputed from the store in plain SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run

from gradbench.grid.expansion import expand
from gradbench.reproduce.catalog import get, suite_of
from gradbench.reproduce.evidence import Evidence
from gradbench.reproduce.papers.glorot_bengio import (
    SIGMOID_TASK,
    TANH_TASK,
    gradient_factor,
    jacobian_mean,
    lower_at_top_minimum,
    top_final,
    top_minimum,
)
from gradbench.store import Store


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("glorot_bengio"), "glorot_bengio")


def test_suite_expands_to_the_sigmoid_and_tanh_grids() -> None:
    cells = expand(suite_of(get("glorot_bengio")))
    assert len(cells) == 3 + 2 * 3
    assert {(cell.activation, cell.init) for cell in cells} == {("sigmoid", "standard"), ("tanh", "standard"), ("tanh", "xavier_uniform")}


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "glorot_bengio", "Jacobians")


def _key(plain: sqlite3.Connection, activation: str, init: str) -> str:
    (key,) = plain.execute("SELECT key FROM runs WHERE activation = ? AND init = ?", (activation, init)).fetchone()
    return str(key)


def test_saturation_measures_match_the_store(smoke: tuple[Path, int, str]) -> None:
    db = smoke[0]
    with Store.open(db, readonly=True) as store, sqlite3.connect(db) as plain:
        evidence = Evidence.of_cells(store, expand(suite_of(get("glorot_bengio"), "smoke")))
        (run,) = evidence.runs(task=SIGMOID_TASK, activation="sigmoid")
        key = _key(plain, "sigmoid", "standard")
        rows = plain.execute("SELECT step, site_index, mean FROM activation_stats WHERE run_key = ?", (key,)).fetchall()
        top = max(site for _, site, _ in rows)
        assert top == 3  # four hidden layers
        top_rows = sorted((mean, step) for step, site, mean in rows if site == top)
        lowest, at = top_rows[0]
        assert top_minimum(evidence, run) == (at, pytest.approx(lowest))
        assert lower_at_top_minimum(evidence, run) == pytest.approx(min(mean for step, site, mean in rows if step == at and site != top))
        last = max(step for step, _, _ in rows)
        assert top_final(evidence, run) == pytest.approx(next(mean for step, site, mean in rows if step == last and site == top))


@pytest.mark.parametrize("init", ["standard", "xavier_uniform"])
def test_gradient_and_jacobian_measures_match_the_store(smoke: tuple[Path, int, str], init: str) -> None:
    db = smoke[0]
    with Store.open(db, readonly=True) as store, sqlite3.connect(db) as plain:
        evidence = Evidence.of_cells(store, expand(suite_of(get("glorot_bengio"), "smoke")))
        (run,) = evidence.runs(task=TANH_TASK, activation="tanh", init=init)
        key = _key(plain, "tanh", init)
        (first,) = plain.execute("SELECT min(step) FROM activation_stats WHERE run_key = ?", (key,)).fetchone()
        norms = dict(plain.execute("SELECT site_index, output_grad_norm FROM activation_stats WHERE run_key = ? AND step = ?", (key, first)).fetchall())
        assert sorted(norms) == [0, 1, 2, 3, 4]
        assert gradient_factor(evidence, run) == pytest.approx((norms[0] / norms[4]) ** 0.25)
        (expected,) = plain.execute("SELECT avg(sv_mean) FROM jacobian_stats WHERE run_key = ? AND step = 0 AND site_index > 0", (key,)).fetchone()
        assert jacobian_mean(evidence, run) == pytest.approx(expected)
        claims = {claim.id: claim for claim in get("glorot_bengio").claims}
        name = "normalised" if init == "xavier_uniform" else "standard"
        assert claims[f"jacobian_sv_{name}"].measure(evidence) == [pytest.approx(expected)]
        assert claims[f"gradient_{name}"].measure(evidence) == [pytest.approx((norms[0] / norms[4]) ** 0.25)]
