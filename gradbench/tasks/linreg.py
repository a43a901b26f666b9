"""``linreg``: least-squares linear regression on generated Gaussian data.

Its closed-form optimum (``data.linreg_optimum``) is known exactly, so a test can check that an
optimizer converges to the right answer, not just that the loss goes down. The model is one
``Linear(dim, 1)`` layer trained on the mean squared error; the target is a test MSE within 10%
of the test MSE of the closed-form solution.
"""

from __future__ import annotations

from torch import nn

from gradbench.axes.inits import initialise
from gradbench.tasks.base import TaskConfig, TaskInstance
from gradbench.tasks.datasets import linreg_optimum, make_linreg

__all__ = ["build_linreg"]


def build_linreg(config: TaskConfig) -> TaskInstance:
    """The ``linreg`` task's model and data (``gradbench.tasks.catalog`` declares it)."""
    knobs = config.knobs
    data = make_linreg(num_train=knobs["num_train"], num_test=knobs["num_train"], dim=knobs["dim"], noise=knobs["noise"], seed=0)
    model = nn.Sequential(nn.Linear(knobs["dim"], 1))
    if config.init is not None:
        initialise(model, config.init, 1.0, config.init_params)
    weight, bias, _ = linreg_optimum(data)
    optimum_test_mse = float((data.x_test.double() @ weight + bias - data.y_test.double()).square().mean())
    return TaskInstance(model, data, nn.functional.mse_loss, metric="loss", target=1.1 * optimum_test_mse)
