"""The task library: the tasks as data in ``catalog``, their models and data one module per family.

Families: ``mlp`` (deep MLPs), ``cnn`` (the MNIST-1D CNN, DeepOBS's 2c2d and 3c3d),
``deep_cnn`` (He et al.'s plain / residual 6n+2-layer CNNs), ``resnet`` (ResNet-18 for 32x32),
``rnn`` (RNN, LSTM, GRU on the adding problem and MNIST-1D), ``quadratic`` (DeepOBS's
``quadratic_deep``) and ``linreg``. ``catalog`` registers every task, naming each family's build
function by path: a family's module, and torch, is imported on its first build, so listing the
tasks and checking their knobs import no torch.
"""

from gradbench.tasks import catalog  # noqa: F401  (importing it registers the built-in tasks)
from gradbench.tasks.base import TASKS, Task, TaskConfig, TaskInstance, list_tasks, register_task, resolve_knobs

__all__ = ["TASKS", "Task", "TaskConfig", "TaskInstance", "list_tasks", "register_task", "resolve_knobs"]
