"""The quadratic_deep reproduction: the optimum's derivation checked numerically, the suite is
DeepOBS's protocol, the smoke size runs through the CLI, and its measures (DeepOBS's tuning rule,
the final test loss at the tuned rate, GD's optimum) read the right numbers, checked against
plain SQLite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from reproduction_runs import check_smoke, smoke_run, sql

from gradbench.grid.expansion import expand
from gradbench.reproduce import catalog
from gradbench.reproduce.evidence import open_evidence
from gradbench.reproduce.papers import quadratic_deep as paper
from gradbench.tasks.datasets import quadratic_deep_hessian
from gradbench.tasks.quadratic import optimum_test_loss


def test_constants_are_those_of_deepobs_hessian_and_data():
    hessian = quadratic_deep_hessian()
    assert np.trace(hessian) == pytest.approx(paper.TRACE_Q, rel=1e-12)
    assert np.trace(hessian @ hessian) == pytest.approx(paper.TRACE_Q2, rel=1e-12)
    assert optimum_test_loss() == pytest.approx(paper.EXACT_OPTIMUM, rel=1e-9)


def test_expected_optimum_matches_a_monte_carlo_over_the_noise():
    """0.5 sigma^2 tr(Q) (1 + 1/n): the test loss at the mean of n training points, averaged
    over fresh draws of both sets (small sets, so the 1/n term is visible)."""
    hessian = quadratic_deep_hessian()
    rng = np.random.default_rng(0)
    n, draws = 10, 4000
    train = rng.normal(0.0, paper.SIGMA, (draws, n, 100)).mean(axis=1)
    test = rng.normal(0.0, paper.SIGMA, (draws, 100))
    difference = train - test
    losses = 0.5 * np.einsum("di,ij,dj->d", difference, hessian, difference)
    expected = 0.5 * paper.SIGMA**2 * np.trace(hessian) * (1 + 1 / n)
    standard_error = losses.std() / math.sqrt(draws)
    assert abs(losses.mean() - expected) < 4 * standard_error
    # And the test set's scatter: a single point's loss has variance 0.5 sigma^4 tr(Q^2) (1 + 1/n)^2.
    assert losses.std() == pytest.approx(math.sqrt(0.5 * paper.SIGMA**4 * paper.TRACE_Q2) * (1 + 1 / n), rel=0.05)


def _cells(size: str = "default"):
    return expand(catalog.suite_of(catalog.get("quadratic_deep"), size))


def test_suites_are_deepobs_protocol():
    cells = [cell for cell in _cells() if cell.optimizer != "gd"]
    lrs = sorted({dict(cell.hyperparameters)["lr"] for cell in cells})
    assert len(lrs) == 21 and lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)
    assert all(math.isclose(b / a, 10**0.2, rel_tol=1e-9) for a, b in zip(lrs, lrs[1:]))
    assert {cell.steps for cell in cells} == {700} and {cell.batch_size for cell in cells} == {128}
    assert {dict(cell.hyperparameters).get("momentum") for cell in cells if cell.optimizer == "momentum"} == {0.99}
    full = [cell for cell in _cells("full") if cell.optimizer != "gd"]
    assert len(full) == 36 * 3 * 10
    (gd,) = [cell for cell in _cells() if cell.optimizer == "gd"]
    assert dict(gd.hyperparameters)["lr"] < 2 / 53.13 and gd.batch_size is None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    return smoke_run(tmp_path_factory.mktemp("quadratic_deep"), "quadratic_deep")


def test_smoke_runs_end_to_end_through_the_cli(smoke: tuple[Path, int, str]) -> None:
    check_smoke(smoke, "quadratic_deep", "GradientDescentOptimizer")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_tuning_rule_and_final_loss_matchsql(smoke, optimizer):
    db, _, _ = smoke
    # DeepOBS's rule in SQL: the lowest final test loss of a finished seed-0 run (diverged runs never win).
    ((lr, loss),) = sql(
        db, "SELECT lr, final_test_loss FROM runs WHERE optimizer = ? AND task = 'quadratic_deep' AND seed = 0 AND status = 'done' "
        "ORDER BY final_test_loss, lr LIMIT 1", optimizer,
    )
    store, evidence = open_evidence(db, _cells("smoke"))
    try:
        claims = {claim.id: claim for claim in paper.REPRODUCTION.claims}
        assert claims[f"{optimizer}_tuned_lr"].measure(evidence) == pytest.approx([lr])
        assert claims[f"{optimizer}_final_test_loss"].measure(evidence) == pytest.approx([loss])
    finally:
        store.close()


def test_optimum_claims_read_gds_final_test_loss(smoke):
    db, _, _ = smoke
    ((loss,),) = sql(db, "SELECT final_test_loss FROM runs WHERE optimizer = 'gd' AND task = 'quadratic_deep'")
    store, evidence = open_evidence(db, _cells("smoke"))
    try:
        claims = {claim.id: claim for claim in paper.REPRODUCTION.claims}
        assert claims["optimum_exact"].measure(evidence) == pytest.approx([loss])
        assert claims["optimum_expected"].measure(evidence) == pytest.approx([loss])
    finally:
        store.close()


def test_a_diverged_run_never_wins_the_tuning():
    class Fake:
        runs = [
            {"seed": 0, "lr": 1.0, "status": "diverged", "final_test_loss": 1.0},
            {"seed": 0, "lr": 0.1, "status": "done", "final_test_loss": 90.0},
            {"seed": 0, "lr": 0.01, "status": "done", "final_test_loss": 88.0},
            {"seed": 1, "lr": 0.1, "status": "done", "final_test_loss": 80.0},
        ]

        def seeds(self, **selection):
            return [0, 1]

        def require(self, seed, **selection):  # the tuning seed's whole grid
            return [run for run in self.runs if run["seed"] == seed]

    assert paper.tuned_lr(Fake(), "sgd") == 0.01  # type: ignore[arg-type]
