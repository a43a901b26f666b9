"""The batch_norm reproduction (Ioffe & Szegedy 2015, Figure 1): its suites load, its smoke
size runs end to end through the CLI, and each measure gives the number recomputed in plain
SQLite from the same store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run, sql, tiny_run

from gradbench.reproduce import catalog
from gradbench.reproduce.evidence import Evidence
from gradbench.reproduce.papers import batch_norm

# The default suite, shrunk to seconds: 40 steps, an evaluation and an activation record every
# 10, two seeds; the claims' selections (norm=none / norm=batch) are the default suite's.
TINY = {"steps": [40], "seeds": [0, 1], "eval_every": 10, "detail_every": 10}


def test_the_suites_load_and_expand_to_the_two_networks():
    from gradbench.grid.expansion import expand

    reproduction = catalog.get("batch_norm")
    default = expand(catalog.suite_of(reproduction))
    assert len(default) == 6 and {cell.steps for cell in default} == {50000} and {cell.batch_size for cell in default} == {60}
    assert {dict(cell.task_knobs)["norm"] for cell in default} == {"none", "batch"}
    full = expand(catalog.suite_of(reproduction, "full"))
    assert len(full) == 6 and {cell.task for cell in full} == {"mnist_mlp"}
    smoke = expand(catalog.suite_of(reproduction, "smoke"))
    assert len(smoke) == 2 and {cell.steps for cell in smoke} == {20}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("batch_norm"), "batch_norm")


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "batch_norm", "BN's test accuracy minus the baseline's")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Evidence]:
    return tiny_run(tmp_path_factory.mktemp("bn"), "batch_norm", TINY)


def _key(db: Path, norm: str, seed: int) -> str:
    rows = [(key, knobs) for key, knobs in sql(db, "SELECT key, task_knobs FROM runs WHERE seed = ?", seed)]
    return next(key for key, knobs in rows if json.loads(knobs)["norm"] == norm)


def _sql_accuracy(db: Path, key: str, step: int) -> float:
    ((value,),) = sql(db, "SELECT test_accuracy FROM evaluations WHERE run_key = ? AND step <= ? ORDER BY step DESC LIMIT 1", key, step)
    return 100 * value


def _sql_shift(db: Path, key: str) -> float:
    rows = sql(
        db,
        "SELECT step, mean, std FROM activation_stats WHERE run_key = ? AND site_index = (SELECT MAX(site_index) FROM activation_sites WHERE run_key = ?) ORDER BY step",
        key, key,
    )
    assert len(rows) >= 3  # steps 1, 11, 21, 31: the shift is not trivially zero
    _, mean0, std0 = rows[0]
    return max(max(abs(m + z * s - (mean0 + z * std0)) for z in (-1.0364, 0.0, 1.0364)) for _, m, s in rows)


def _claim(claim_id: str):
    return next(claim for claim in batch_norm.REPRODUCTION.claims if claim.id == claim_id)


def test_accuracy_gaps_are_bn_minus_baseline_at_the_last_evaluation_not_after_the_step(tiny_store):
    db, evidence = tiny_store
    expected = [_sql_accuracy(db, _key(db, "batch", seed), 40) - _sql_accuracy(db, _key(db, "none", seed), 40) for seed in (0, 1)]
    assert _claim("early_gap").measure(evidence) == pytest.approx(expected)
    assert _claim("end_gap").measure(evidence) == pytest.approx(expected)  # both steps lie past 40
    run = evidence.runs(norm="batch", seed=0)[0]
    assert batch_norm.accuracy_at(evidence, run, 25) == pytest.approx(_sql_accuracy(db, _key(db, "batch", 0), 20))
    assert batch_norm.accuracy_at(evidence, run, 30) == pytest.approx(_sql_accuracy(db, _key(db, "batch", 0), 30))  # at the step itself
    assert _claim("end_accuracy_plain").measure(evidence) == pytest.approx([_sql_accuracy(db, _key(db, "none", seed), 40) for seed in (0, 1)])


def test_percentile_shift_is_the_largest_move_of_the_normal_percentiles_of_the_last_hidden_layer(tiny_store):
    db, evidence = tiny_store
    plain = [_sql_shift(db, _key(db, "none", seed)) for seed in (0, 1)]
    bn = [_sql_shift(db, _key(db, "batch", seed)) for seed in (0, 1)]
    assert _claim("shift_plain").measure(evidence) == pytest.approx(plain)
    assert _claim("shift_bn").measure(evidence) == pytest.approx(bn)
    assert _claim("shift_ratio").measure(evidence) == pytest.approx([p / b for p, b in zip(plain, bn)])


def test_percentile_shift_counts_a_change_of_spread_as_well_as_of_mean():
    assert batch_norm.percentile_shift([(1, 0.5, 0.1), (2, 0.5, 0.3)]) == pytest.approx(1.0364 * 0.2)
    assert batch_norm.percentile_shift([(1, 0.5, 0.1), (2, 0.4, 0.1), (3, 0.45, 0.1)]) == pytest.approx(0.1)


def test_the_figure_draws_three_panels(tiny_store):
    _, evidence = tiny_store
    figure = batch_norm.figure(evidence)
    assert len(figure.axes) == 3 and len(figure.axes[1].lines) == 3 and len(figure.axes[0].lines) == 2
