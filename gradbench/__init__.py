"""gradbench: benchmark optimizers, activations, clipping and initialisation on deep networks.

The public API: registries to list and extend, the gradient monitor for any training loop, the
path from a suite to a stored result (``expand`` -> ``run_cell`` -> ``Store``, or ``run_sweep``
for all of it), and verdicts on gradient health (``gradbench.monitor.diagnose``). Names are
imported on first use, so ``import gradbench`` is quick and does not import torch.

The package follows the data flow, one subpackage per part: ``axes`` (what a grid varies),
``tasks`` (models and their data), ``monitor`` (gradient statistics and diagnosis), ``grid``
(suite -> cells), ``run`` (one cell -> one result), ``store`` (the SQLite file), ``sweep``
(cells on executors, into the store) and ``report`` (tables and figures from the store).
"""

from typing import TYPE_CHECKING

from gradbench import _moved
from gradbench._lazy import attach

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it here)

if TYPE_CHECKING:
    from gradbench.axes.activations import (
        ACTIVATIONS,
        activation_gain,
        build_activation,
        list_activations,
        register_activation,
    )
    from gradbench.axes.clipping import CLIPS, Clipping, list_clips, parse_clipping
    from gradbench.axes.inits import INITS, initialise, list_inits, register_init
    from gradbench.axes.optimizers import (
        OPTIMIZERS,
        build_optimizer,
        list_optimizers,
        register_optimizer,
        resolve_hyperparameters,
    )
    from gradbench.axes.registry import Registry
    from gradbench.grid.cell import Cell
    from gradbench.grid.expansion import expand
    from gradbench.grid.suite import (
        Suite,
        SuiteError,
        default_suite,
        load_suite,
        parse_suite,
    )
    from gradbench.monitor.gradient_monitor import GradientMonitor
    from gradbench.monitor.history import ActivationSite, MonitorHistory, NonFinite
    from gradbench.run.context import RunContext
    from gradbench.run.result import RunResult
    from gradbench.run.train import run_cell, train_step
    from gradbench.store.database import Store, StoreError
    from gradbench.sweep.driver import run_sweep
    from gradbench.tasks.base import (
        TASKS,
        Task,
        TaskConfig,
        TaskInstance,
        list_tasks,
        register_task,
    )

__getattr__, __dir__, __all__ = attach(__name__, __file__)
_moved.install()
