"""The task library: one module per family, each registering its tasks on import.

Families: ``mlp`` (deep MLPs), ``cnn`` (the MNIST-1D CNN, DeepOBS's 2c2d and 3c3d),
``deep_cnn`` (He et al.'s plain / residual 6n+2-layer CNNs), ``resnet`` (ResNet-18 for 32x32),
``rnn`` (RNN, LSTM, GRU on the adding problem and MNIST-1D), ``quadratic`` (DeepOBS's
``quadratic_deep``) and ``linreg``.
"""

# Imported one by one, in the order `gradbench list tasks` shows them.
from gradbench.tasks import mlp  # noqa: F401,I001  (each import registers its family's tasks)
from gradbench.tasks import cnn  # noqa: F401,I001
from gradbench.tasks import deep_cnn  # noqa: F401,I001
from gradbench.tasks import resnet  # noqa: F401,I001
from gradbench.tasks import rnn  # noqa: F401,I001
from gradbench.tasks import quadratic  # noqa: F401,I001
from gradbench.tasks import linreg  # noqa: F401,I001
from gradbench.tasks.base import TASKS, Task, TaskConfig, TaskInstance, list_tasks, register_task, resolve_knobs

__all__ = ["TASKS", "Task", "TaskConfig", "TaskInstance", "list_tasks", "register_task", "resolve_knobs"]
