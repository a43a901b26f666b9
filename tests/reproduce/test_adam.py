"""The Adam reproduction: its suite is Sec. 6.1's protocol on digits, the smoke size runs through
the CLI, and its measures (each optimizer tuned on the final training NLL, the NLL ratios at an
epoch) read the right numbers, checked against plain SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from reproduction_runs import check_smoke, smoke_run, sql

from gradbench.grid.expansion import expand
from gradbench.reproduce import catalog
from gradbench.tasks import TASKS
from gradbench.reproduce.evidence import open_evidence
from gradbench.reproduce.papers import adam as paper


def _cells(size: str = "default"):
    return expand(catalog.suite_of(catalog.get("adam"), size))


def test_suite_is_section_6_1_on_digits():
    cells = _cells()
    assert {cell.optimizer for cell in cells} == set(paper.OPTIMIZERS)
    assert {cell.schedule for cell in cells} == {"inverse_sqrt"}
    assert {cell.batch_size for cell in cells} == {128} and {cell.steps for cell in cells} == {45 * paper.STEPS_PER_EPOCH}
    assert all(dict(cell.hyperparameters)["weight_decay"] == 1e-4 for cell in cells)
    assert {dict(cell.task_knobs)["depth"] for cell in cells} == {0}
    assert len(cells) == 4 * 12 * 3
    train_size = TASKS.get("digits_mlp").train_size
    assert train_size is not None and train_size({"depth": 0}) // 128 == paper.STEPS_PER_EPOCH  # the digits' own split


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("adam"), "adam")


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "adam", "Sec. 6.1")


def _sql_tuned_key(db: Path, optimizer: str) -> tuple[str, float]:
    """The key and lr of the tuned run (smoke: one seed), by the lowest final training loss."""
    rows = sql(db, "SELECT key, lr, final_train_loss FROM runs WHERE optimizer = ? AND status = 'done' AND task LIKE 'digits%'", optimizer)
    best = min(loss for _, _, loss in rows)
    ((key, lr),) = [(key, lr) for key, lr, loss in rows if loss == best]
    return key, lr


@pytest.mark.parametrize("optimizer", paper.OPTIMIZERS)
def test_tuning_picks_the_lowest_final_training_nll(smoke, optimizer):
    db, _, _ = smoke
    key, lr = _sql_tuned_key(db, optimizer)
    store, evidence = open_evidence(db, _cells("smoke"))
    try:
        (run,) = paper.tuned_runs(evidence, optimizer).values()
        assert run["key"] == key and float(run["lr"]) == lr
    finally:
        store.close()


def test_ratio_measure_divides_the_nll_at_the_epoch(smoke):
    db, _, _ = smoke
    adam_key, _ = _sql_tuned_key(db, "adam")
    nesterov_key, _ = _sql_tuned_key(db, "nesterov")
    step = paper.STEPS_PER_EPOCH  # epoch 1: evaluated within the smoke's 20 steps

    def nll(key: str) -> float:
        ((value,),) = sql(db, "SELECT train_loss FROM evaluations WHERE run_key = ? AND step = ?", key, step)
        return value

    store, evidence = open_evidence(db, _cells("smoke"))
    try:
        assert paper._ratio("adam", "nesterov", 1)(evidence) == pytest.approx([nll(adam_key) / nll(nesterov_key)])
        claims = {claim.id: claim for claim in paper.REPRODUCTION.claims}
        assert all(value != value for value in claims["adam_vs_nesterov_final"].measure(evidence))  # epoch 45 never reached: nan
    finally:
        store.close()


def test_the_full_suite_is_section_6_1_on_mnist_itself():
    cells, default = _cells("full"), _cells()
    assert len(cells) == 4 * 12 * 3 and {cell.task for cell in cells} == {"mnist_mlp"}
    assert {(dict(cell.task_knobs)["depth"], dict(cell.task_knobs)["train_eval_size"]) for cell in cells} == {(0, 60000)}  # all of it
    assert {cell.eval_every for cell in cells} == {60000 // 128} and {cell.steps for cell in cells} == {45 * (60000 // 128)}
    # The rest is the default size's protocol: optimizers, rates, seeds, batch, schedule.
    protocol = lambda cell: (cell.optimizer, cell.hyperparameters, cell.lr, cell.seed, cell.batch_size, cell.schedule)  # noqa: E731
    assert {protocol(cell) for cell in cells} == {protocol(cell) for cell in default}


def test_on_mnist_an_epoch_is_the_runs_eval_every(tiny_data, tmp_path):
    # The full suite, shrunk to seconds on the tiny MNIST files (200 training images: one step
    # of 128 an epoch): the claims read epoch k at step k x eval_every, not at digits' 11 k.
    from gradbench.run.context import RunContext
    from gradbench.store.database import Store
    from gradbench.sweep.driver import run_sweep
    from gradbench.tasks.image_datasets import DataOptions

    overrides = {"steps": [3], "eval_every": 1, "seeds": [0], "lrs": [0.01, 0.1]}
    cells = expand(catalog.suite_of(catalog.get("adam"), "full").with_overrides(overrides))
    db = tmp_path / "full.db"
    with Store.open(db, create=True) as store:
        run_sweep(cells, store, progress=False, job=RunContext(data_options=DataOptions(tiny_data.root)))
    store, evidence = open_evidence(db, cells)
    try:
        tuned = {name: paper.tuned_runs(evidence, name)[0]["key"] for name in ("adam", "nesterov")}

        def nll(key: str, step: int) -> float:
            ((value,),) = sql(db, "SELECT train_loss FROM evaluations WHERE run_key = ? AND step = ?", key, step)
            return value

        assert paper._ratio("adam", "nesterov", 2)(evidence) == pytest.approx([nll(tuned["adam"], 2) / nll(tuned["nesterov"], 2)])
        assert "logistic regression on MNIST" in paper.figure(evidence).axes[0].get_title()
    finally:
        store.close()
