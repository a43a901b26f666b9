"""gradbench: benchmark optimizers, activations, clipping and initialisation on deep networks.

The public API: registries to list and extend, the gradient monitor for any training loop, the
path from a suite to a stored result (``expand`` -> ``run_cell`` -> ``Store``), and verdicts on
gradient health (``gradbench.diagnose``).
"""

from gradbench.activations import ACTIVATIONS, activation_gain, build_activation, list_activations, register_activation
from gradbench.clipping import CLIPS, Clipping, list_clips, parse_clipping
from gradbench.grid import Cell, Suite, SuiteError, default_suite, expand, load_suite, parse_suite
from gradbench.init import INITS, initialise, list_inits, register_init
from gradbench.history import ActivationSite
from gradbench.monitor import GradientMonitor, MonitorHistory, NonFinite
from gradbench.optimizers import OPTIMIZERS, build_optimizer, list_optimizers, register_optimizer, resolve_hyperparameters
from gradbench.registry import Registry
from gradbench.store import Store, StoreError
from gradbench.tasks import TASKS, Task, TaskConfig, TaskInstance, list_tasks, register_task
from gradbench.train import RunResult, run_cell, train_step

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "CLIPS", "INITS", "OPTIMIZERS", "TASKS",
    "ActivationSite", "Cell", "Clipping", "GradientMonitor", "MonitorHistory", "NonFinite", "Registry", "RunResult",
    "Store", "StoreError", "Suite", "SuiteError", "Task", "TaskConfig", "TaskInstance",
    "activation_gain", "build_activation", "build_optimizer", "default_suite", "expand", "initialise",
    "list_activations", "list_clips", "list_inits", "list_optimizers", "list_tasks", "load_suite",
    "parse_clipping", "parse_suite", "register_activation", "register_init", "register_optimizer",
    "register_task", "resolve_hyperparameters", "run_cell", "train_step",
]
