"""The task library: one module per family, each registering its tasks on import."""

from gradbench.tasks import linreg, mlp  # noqa: F401  (registers the tasks)
from gradbench.tasks.base import TASKS, Task, TaskConfig, TaskInstance, list_tasks, register_task, resolve_knobs

__all__ = ["TASKS", "Task", "TaskConfig", "TaskInstance", "list_tasks", "register_task", "resolve_knobs"]
