"""The ``Task`` spec: how to build a model and its data, the loss, the metric and the target.

A task is registered once and built per run from a ``TaskConfig`` (its knobs, the activation and
the initialiser of the run). Knobs are checked against the task's declared defaults before
anything trains, so ``mnist1d_mlp[depht=30]`` fails at once with the list of valid knobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradbench.data import Dataset
from gradbench.registry import Registry

__all__ = ["Task", "TaskConfig", "TaskInstance", "TASKS", "register_task", "list_tasks", "resolve_knobs"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TaskConfig:
    """What a task's builder receives.

    Attributes:
        knobs: The task's knobs, defaults filled in.
        activation, activation_params: The activation and its parameters (``None`` if the task
            takes no activation).
        init, init_params: The initialiser and its parameters (``None``: torch's default).
    """

    knobs: Mapping[str, Any]
    activation: str | None = None
    activation_params: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TaskInstance:
    """A built task, ready to train.

    Attributes:
        model: The model, on the CPU (the runner moves it).
        data: The dataset, on the CPU (the runner moves it once).
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar mean loss.
        metric: ``"accuracy"`` (higher is better) or ``"loss"`` (test loss, lower is better).
        target: The metric value that counts as solved, for steps-to-target; ``None``: no target.
    """

    model: nn.Module
    data: Dataset
    loss_fn: LossFn
    metric: str
    target: float | None


@dataclass(frozen=True)
class Task:
    """One registered task.

    Attributes:
        name: Registry name (``<dataset>_<model>``).
        description: One line for ``gradbench list tasks``.
        build: ``TaskConfig -> TaskInstance``; the caller seeds torch first.
        knobs: Knob names and defaults. Integer knobs are counts and must be >= 1.
        uses_activation, uses_init: Whether the activation and init axes apply to this task.
        batch_size: Default mini-batch size.
        train_size: ``knobs -> number of training examples``, so that a batch size larger than
            the training set is refused before anything trains.
        check: ``knobs -> None``, raising ``ValueError`` for knob values that cannot work
            together (checked with the knobs, before anything trains).
    """

    name: str
    description: str
    build: Callable[[TaskConfig], TaskInstance]
    knobs: Mapping[str, Any]
    uses_activation: bool = True
    uses_init: bool = True
    batch_size: int = 64
    train_size: Callable[[Mapping[str, Any]], int] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task, *, overwrite: bool = False) -> Task:
    return TASKS.register(task.name, task, overwrite=overwrite)


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.names(pattern)


def resolve_knobs(name: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Task ``name``'s knobs: defaults updated by ``given``, each checked.

    Raises:
        ValueError: for an unknown task or knob, or a value of the wrong type or range.
    """
    task = TASKS.get(name)
    knobs = dict(task.knobs)
    for key, value in (given or {}).items():
        if key not in task.knobs:
            valid = ", ".join(task.knobs) or "none"
            raise ValueError(f"task {name!r} has no knob {key!r}; knobs: {valid}")
        default = task.knobs[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            expected = "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            expected = "an integer >= 1"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
            expected = "a number >= 0"
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(default))
            expected = type(default).__name__
        if not ok:
            raise ValueError(f"invalid knob {key}={value!r} for task {name!r}: expected {expected}")
        knobs[key] = value
    if task.check is not None:
        task.check(knobs)
    return knobs
