"""``quadratic_deep``: DeepOBS's noisy quadratic with a deep-learning-like Hessian spectrum.

The loss of parameters ``theta`` (100-dimensional, initialised to ones) on a data point ``x`` is

.. math::

    \\ell(\\theta; x) = \\tfrac12 (\\theta - x)^\\top Q (\\theta - x),

with ``Q = R^T diag(lambda) R``: 90 eigenvalues from U(0, 1) and 10 from U(30, 60) (the spectrum
Chaudhari et al. report for deep networks, a few large directions and a bulk of flat ones),
rotated by a random rotation ``R``, all drawn from ``RandomState(42)``; the data are
N(0, 0.6^2 I), 1000 training points from ``RandomState(42)`` and 1000 test points from
``RandomState(43)`` (``data.load_quadratic_deep``). The training loss is minimised at the mean
of the training points, so the optimum and its test loss are known exactly: the target is a
test loss within 1% of the test loss at the training optimum.

DeepOBS's default batch size for it is 128 (``DEFAULT_TEST_PROBLEMS_SETTINGS``).

References:
    Schneider, Balles & Hennig, "DeepOBS: A Deep Learning Optimizer Benchmark Suite",
    https://arxiv.org/abs/1903.05499.
    Chaudhari et al., "Entropy-SGD: Biasing Gradient Descent Into Wide Valleys",
    https://arxiv.org/abs/1611.01838 (the eigenvalue spectrum).
"""

from __future__ import annotations

import torch
from torch import nn

from gradbench.tasks.base import TaskConfig, TaskInstance
from gradbench.tasks.datasets import load_quadratic_deep

__all__ = ["NoisyQuadratic", "optimum_test_loss", "build_quadratic_deep"]


class NoisyQuadratic(nn.Module):
    """The quadratic's one "layer": ``theta`` (initialised to ones) and the fixed Hessian ``Q``.

    ``forward(x)`` returns each example's loss ``0.5 (theta - x)^T Q (theta - x)``, shape ``[N]``;
    the task's loss function averages it. ``Q`` is a buffer, so it moves with the model.
    """

    hessian: torch.Tensor  # a buffer

    def __init__(self, hessian: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.ones(hessian.shape[0]))
        self.register_buffer("hessian", hessian.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        difference = self.theta - x
        return 0.5 * ((difference @ self.hessian) * difference).sum(dim=1)


def _mean_loss(per_example_losses: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return per_example_losses.mean()


def optimum_test_loss() -> float:
    """The test loss (float64) at the minimiser of the training loss, the mean training point."""
    data, hessian = load_quadratic_deep()
    optimum = data.x_train.double().mean(dim=0)
    difference = data.x_test.double() - optimum
    return float(0.5 * ((difference @ hessian.double()) * difference).sum(dim=1).mean())


def build_quadratic_deep(config: TaskConfig) -> TaskInstance:
    """The ``quadratic_deep`` task's model and data (``gradbench.tasks.catalog`` declares it)."""
    data, hessian = load_quadratic_deep()
    target = (1.0 + config.knobs["target_gap"]) * optimum_test_loss()
    return TaskInstance(NoisyQuadratic(hessian), data, _mean_loss, metric="loss", target=target)
