"""``quadratic_deep`` against its definition: DeepOBS's spectrum, data and optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradbench.grid import expand, parse_suite
from gradbench.run import run_cell
from gradbench.tasks.datasets import load_quadratic_deep, quadratic_deep_hessian
from gradbench.tasks.quadratic import NoisyQuadratic


def test_hessian_has_deepobs_eigenvalues_and_a_random_rotation():
    rng = np.random.RandomState(42)  # the definition: these draws, in this order, come first
    eigenvalues = np.concatenate((rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)))
    hessian = quadratic_deep_hessian()
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian), np.sort(eigenvalues), rtol=1e-10, atol=1e-12)
    # Rotated: the eigenvectors are not the coordinate axes.
    _, vectors = np.linalg.eigh(hessian)
    assert np.abs(vectors).max() < 0.9


def test_data_are_deepobs_draws():
    dataset, hessian = load_quadratic_deep()
    expected_train = np.random.RandomState(42).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    expected_test = np.random.RandomState(43).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    assert np.array_equal(dataset.x_train.numpy(), expected_train)
    assert np.array_equal(dataset.x_test.numpy(), expected_test)
    torch.testing.assert_close(hessian, torch.from_numpy(quadratic_deep_hessian()).float())


def test_model_computes_the_quadratic_form_from_theta_at_ones():
    dataset, hessian = load_quadratic_deep()
    model = NoisyQuadratic(hessian)
    assert torch.equal(model.theta.detach(), torch.ones(100))
    x = dataset.x_train[:3].double()
    expected = [0.5 * (1 - row) @ hessian.double() @ (1 - row) for row in x]
    torch.testing.assert_close(model(dataset.x_train[:3]).double(), torch.stack(expected), rtol=1e-5, atol=0)


def _definition() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training points, test points, Hessian) in float64, drawn as the definition says."""
    x_train = np.random.RandomState(42).normal(0.0, 0.6, (1000, 100)).astype(np.float32).astype(np.float64)
    x_test = np.random.RandomState(43).normal(0.0, 0.6, (1000, 100)).astype(np.float32).astype(np.float64)
    return x_train, x_test, quadratic_deep_hessian()


def _test_loss(theta: np.ndarray, x_test: np.ndarray, hessian: np.ndarray) -> float:
    difference = x_test - theta
    return float(0.5 * np.einsum("ij,jk,ik->i", difference, hessian, difference).mean())


def test_a_long_gd_run_approaches_the_optimum_test_loss():
    """The training loss 0.5 mean_i (theta - x_i)^T Q (theta - x_i) has gradient
    Q (theta - mean_i x_i): it is minimised at the mean training point theta* (Q is positive
    definite), and gradient descent from theta_0 follows theta_k = theta* + (I - lr Q)^k
    (theta_0 - theta*) exactly. The run must follow that path down to the optimum test loss."""
    x_train, x_test, hessian = _definition()
    assert np.linalg.eigvalsh(hessian).min() > 0
    optimum_theta = x_train.mean(axis=0)
    optimum = _test_loss(optimum_theta, x_test, hessian)
    lr, steps = 0.03, 2000  # the largest eigenvalue is below 60: GD is stable for lr < 2/60
    (cell,) = expand(parse_suite("").with_overrides({"tasks": ["quadratic_deep"], "optimizers": ["gd"], "lrs": [lr], "steps": [steps], "eval_every": 500}))
    result = run_cell(cell)
    assert result.status == "done", result.error
    gaps = []
    for evaluation in result.evaluations:
        theta = optimum_theta + np.linalg.matrix_power(np.eye(100) - lr * hessian, evaluation.step) @ (np.ones(100) - optimum_theta)
        assert evaluation.test_loss == pytest.approx(_test_loss(theta, x_test, hessian), rel=1e-5)
        gaps.append(evaluation.test_loss - optimum)
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[0] > 2 * optimum  # theta = ones starts far away
    assert gaps[-1] < 1e-4 * optimum
    assert result.target == pytest.approx(1.01 * optimum, rel=1e-6)
    assert result.metrics()["steps_to_target"] == 500
