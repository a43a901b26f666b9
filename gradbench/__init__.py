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

if TYPE_CHECKING:  # each name from the subpackage that owns it
    from gradbench.axes import (
        ACTIVATIONS, CLIPS, INITS, OPTIMIZERS, Clipping, Registry, activation_gain, build_activation, build_optimizer, initialise,
        list_activations, list_clips, list_inits, list_optimizers, parse_clipping, register_activation, register_init,
        register_optimizer, resolve_hyperparameters, SCHEDULES, list_schedules, register_schedule, PRECISIONS,
    )
    from gradbench.grid import Cell, Suite, SuiteError, default_suite, expand, load_suite, parse_suite
    from gradbench.monitor import ActivationSite, GradientMonitor, MonitorHistory, NonFinite
    from gradbench.report import Results
    from gradbench.run import RunContext, RunResult, run_cell, train_step
    from gradbench.store import Store, StoreError
    from gradbench.sweep import run_sweep
    from gradbench.tasks import TASKS, Task, TaskConfig, TaskInstance, list_tasks, register_task

__getattr__, __dir__, __all__ = attach(__name__, __file__)
_moved.install()
