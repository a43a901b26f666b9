"""The ``Task`` spec: how to build a model and its data, the loss, the metric and the target.

A task is registered once and built per run from a ``TaskConfig`` (its knobs, the activation and
the initialiser of the run, where the real datasets live). Knobs are checked against the task's
declared defaults and choices before anything trains, so ``mnist1d_mlp[depht=30]`` or
``mnist1d_mlp[norm=bach]`` fails at once with the list of valid knobs or values.

Every task also takes a ``batch_size`` knob: the task's mini-batch size, which the grid moves
into the cell's own ``batch_size`` (see ``gradbench.grid.expansion``). Setting it both as a knob and with the
``batch_sizes`` axis (``--batch-size``) is an error, so that no one wonders which one won. And
every task takes an ``order`` knob, the order in which the runner draws mini-batches:
``shuffled`` (a fresh permutation of the training set every epoch, from the run's seed; the
default) or ``fixed`` (the training set in its stored order, the same every epoch).

This module imports no torch: a task's description, knobs and rules are data, so listing the
tasks and checking a spec need none; only ``Task.build`` (the built-in ones import their
family's module on the first build, ``gradbench.tasks.catalog``) and ``apply_init`` do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradbench.axes.activations import activation_gain
from gradbench.axes.inits import initialise
from gradbench.axes.registry import Registry
from gradbench.axes.specs import bounds_text, outside

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gradbench.tasks.datasets import Dataset
    from gradbench.tasks.image_datasets import DataOptions

__all__ = [
    "RUNNER_KNOBS", "default_knobs",
    "Task", "TaskConfig", "TaskInstance", "TASKS", "BATCH_SIZE_KNOB", "ORDER_KNOB", "ORDER_CHOICES", "register_task", "list_tasks",
    "resolve_knobs", "keyed_knobs", "apply_init", "NORM_CHOICES", "LOSS_CHOICES", "MNIST1D_KNOBS", "MNIST1D_UNKEYED", "MNIST1D_BOUNDS",
]

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
# The knob every task accepts; the grid turns it into the cell's batch size.
BATCH_SIZE_KNOB = "batch_size"
# The other knob every task accepts: how the runner draws batches (the first is the default).
ORDER_KNOB = "order"
ORDER_CHOICES = ("shuffled", "fixed")
RUNNER_KNOBS = (BATCH_SIZE_KNOB, ORDER_KNOB)  # the runner's, not the task builder's
NORM_CHOICES = ("none", "batch", "layer")
LOSS_CHOICES = ("cross_entropy", "mse")  # the classification losses by name (blocks.classification_loss)

# MNIST-1D's knobs, the same on every task that reads it: its size, the fraction held out for
# testing, and the paper's shuffled variant (one fixed permutation of the 40 positions).
MNIST1D_KNOBS: Mapping[str, Any] = {"num_samples": 5000, "test_size": 0.2, "shuffle_seq": False}
MNIST1D_UNKEYED = frozenset({"test_size", "shuffle_seq"})  # came after results were stored
MNIST1D_BOUNDS: Mapping[str, tuple[float | None, float | None]] = {"test_size": (0.01, 0.99)}


def _data_options_from_environment() -> DataOptions:
    from gradbench.tasks.image_datasets import DataOptions  # torch: only when a task is built

    return DataOptions.from_environment()


@dataclass(frozen=True)
class TaskConfig:
    """What a task's builder receives.

    Attributes:
        knobs: The task's knobs, defaults filled in (``batch_size`` excepted: it is the
            runner's business).
        activation, activation_params: The activation and its parameters (``None`` if the task
            takes no activation).
        init, init_params: The initialiser and its parameters (``None``: the task takes none;
            ``"default"``: the model's own initialisation).
        data: Where real datasets live and whether they may be downloaded.
    """

    knobs: Mapping[str, Any]
    activation: str | None = None
    activation_params: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_params: Mapping[str, Any] = field(default_factory=dict)
    data: DataOptions = field(default_factory=_data_options_from_environment)


@dataclass
class TaskInstance:
    """A built task, ready to train.

    Attributes:
        model: The model, on the CPU (the runner moves it).
        data: The dataset, on the CPU (the runner moves it once).
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar mean loss.
        metric: ``"accuracy"`` (higher is better) or ``"loss"`` (test loss, lower is better).
        target: The metric value that counts as solved, for steps-to-target; ``None``: no target.
        chance_loss: The training loss of the best constant prediction (the label frequencies,
            the mean target): what a model that learned nothing from the inputs reaches.
            ``None``: the runner works it out for the losses it knows (cross-entropy, MSE on
            one-hot labels, MSE on targets), else there is none.
        standardize: Scale every input feature to mean 0 and variance 1 over the training set,
            which the runner does after holding out a validation split (whose statistics then
            play no part).
    """

    model: nn.Module
    data: Dataset
    loss_fn: LossFn
    metric: str
    target: float | None
    chance_loss: float | None = None
    standardize: bool = False


@dataclass(frozen=True)
class Task:
    """One registered task.

    Attributes:
        name: Registry name (``<dataset>_<model>``).
        description: One line for ``gradbench list tasks``.
        build: ``TaskConfig -> TaskInstance``; the caller seeds torch first. A
            ``gradbench._lazy.Deferred`` names it by path, so that its module (and torch) is
            imported on the first build, not when the task is registered.
        knobs: Knob names and defaults. The default's type is the knob's type; integer knobs
            are counts and must be >= 1, float knobs must be >= 0, unless ``knob_bounds``
            says otherwise.
        uses_activation, uses_init: Whether the activation and init axes apply to this task.
        batch_size: Default mini-batch size (the ``batch_size`` knob's default).
        knob_choices: For string knobs, the values allowed.
        knob_bounds: For number knobs, ``(minimum, maximum)`` where the default range does not
            fit (``depth`` 0 is a linear model, a seed may be 0); ``None`` leaves a side open.
        check_knobs: Rules beyond type and range (``depth`` of the form 6n + 2): returns
            ``None`` when the knobs are valid, else ``(knob, rule)`` for the error message.
        datasets: Real datasets the task reads from the data directory (``mnist``, ...), so
            that the command line can check or download them before anything runs.
        unkeyed_defaults: Knobs added after results could have been stored: left out of a
            cell's identity while at their default, so those cells keep their keys.
        train_size: ``knobs -> number of training examples``, so that a batch size larger than
            the training set is refused before anything trains (``None``: not known up front).
    """

    name: str
    description: str
    build: Callable[[TaskConfig], TaskInstance]
    knobs: Mapping[str, Any]
    uses_activation: bool = True
    uses_init: bool = True
    batch_size: int = 64
    knob_choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    knob_bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    check_knobs: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None
    datasets: tuple[str, ...] = ()
    unkeyed_defaults: frozenset[str] = frozenset()
    train_size: Callable[[Mapping[str, Any]], int] | None = None

    def __post_init__(self) -> None:
        if BATCH_SIZE_KNOB in self.knobs:
            raise ValueError(f"task {self.name!r}: {BATCH_SIZE_KNOB!r} is implicit; set Task.batch_size instead")
        if ORDER_KNOB in self.knobs:
            raise ValueError(f"task {self.name!r}: {ORDER_KNOB!r} is a knob of every task (the runner's batch order); choose another name")
        for key, choices in self.knob_choices.items():
            if self.knobs.get(key) not in choices:
                raise ValueError(f"task {self.name!r}: default {key}={self.knobs.get(key)!r} is not one of its choices {choices}")
        unknown = sorted((set(self.knob_choices) | set(self.knob_bounds)) - set(self.knobs))
        if unknown:
            raise ValueError(f"task {self.name!r}: choices or bounds for {unknown[0]!r}, which is not one of its knobs ({', '.join(self.knobs)})")
        # The defaults obey the task's own rules, so that a task that lists cannot fail every run.
        for key, default in self.knobs.items():
            try:
                _check_value(self.name, self, key, default)
            except ValueError as error:
                raise ValueError(f"task {self.name!r}: its default is invalid: {error}") from None
        if self.check_knobs is not None:
            broken = self.check_knobs({**self.knobs, BATCH_SIZE_KNOB: self.batch_size})
            if broken is not None:
                raise ValueError(f"task {self.name!r}: its default {broken[0]}={self.knobs.get(broken[0])!r} breaks its own rule: {broken[1]}")
        if not (isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool) and self.batch_size >= 1):
            raise ValueError(f"task {self.name!r}: batch_size={self.batch_size!r} must be an integer >= 1")

    def describe_knobs(self) -> str:
        """``depth=8, norm=none (none|batch|layer), ..., batch_size=64`` for listings."""
        from gradbench.axes.specs import format_value

        parts = []
        for key, default in self.knobs.items():
            choices = self.knob_choices.get(key)
            parts.append(f"{key}={default} ({'|'.join(choices)})" if choices else f"{key}={format_value(default)}")
        parts.append(f"{BATCH_SIZE_KNOB}={self.batch_size}")
        parts.append(f"{ORDER_KNOB}={ORDER_CHOICES[0]} ({'|'.join(ORDER_CHOICES)})")
        return ", ".join(parts)


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task, *, overwrite: bool = False) -> Task:
    return TASKS.register(task.name, task, overwrite=overwrite)


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.names(pattern)


def _check_value(name: str, task: Task, key: str, value: Any) -> Any:
    default = {BATCH_SIZE_KNOB: task.batch_size, ORDER_KNOB: ORDER_CHOICES[0]}.get(key, task.knobs.get(key))
    choices = ORDER_CHOICES if key == ORDER_KNOB else task.knob_choices.get(key)
    if choices is not None:
        if value is None and "none" in choices:
            value = "none"  # the spec syntax reads a bare `none` as null: here it means the choice
        if value not in choices:
            raise ValueError(f"invalid knob {key}={value!r} for task {name!r}; choose from: {', '.join(choices)}")
        return value
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        integer = isinstance(default, int)
        low, high = task.knob_bounds.get(key, (1 if integer else 0, None))
        number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        ok = number and not outside(value, low, high) and (integer or math.isfinite(value))
        expected = f"{'an integer' if integer else 'a number'} {bounds_text(low, high)}".strip()
        value = float(value) if ok and not integer else value
    else:
        ok, expected = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise ValueError(f"invalid knob {key}={value!r} for task {name!r}: expected {expected}")
    return value


def default_knobs(name: str) -> dict[str, Any]:
    """Task ``name``'s knobs at their defaults, with the batch ``order`` every task has
    (``batch_size``, a field of the cell, is not among them)."""
    return {**TASKS.get(name).knobs, ORDER_KNOB: ORDER_CHOICES[0]}


def resolve_knobs(name: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Task ``name``'s knobs, ``batch_size`` included: defaults updated by ``given``, each checked.

    Raises:
        ValueError: for an unknown task or knob, or a value of the wrong type, range or choice.
    """
    task = TASKS.get(name)
    knobs = {**task.knobs, BATCH_SIZE_KNOB: task.batch_size, ORDER_KNOB: ORDER_CHOICES[0]}
    for key, value in (given or {}).items():
        if key not in knobs:
            valid = ", ".join(knobs)
            raise ValueError(f"task {name!r} has no knob {key!r}; knobs: {valid}")
        knobs[key] = _check_value(name, task, key, value)
    if knobs.get("num_samples", 20) < 20:  # MNIST-1D draws num_samples // 10 per digit
        raise ValueError(f"invalid knob num_samples={knobs['num_samples']} for task {name!r}: must be >= 20 (2 examples per class)")
    broken = task.check_knobs(knobs) if task.check_knobs is not None else None
    if broken is not None:
        key, rule = broken
        raise ValueError(f"invalid knob {key}={knobs[key]!r} for task {name!r}: {rule}")
    return knobs


def mnist1d_train_size(knobs: Mapping[str, Any]) -> int:
    """Training examples of MNIST-1D made with the task's ``num_samples`` and ``test_size``."""
    from gradbench.tasks.datasets import mnist1d_train_count

    return mnist1d_train_count(knobs["num_samples"], knobs.get("test_size", 0.2))


def keyed_knobs(name: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs that make up a cell's identity: all but ``batch_size`` (the cell has its own
    field), ``order`` while it is ``shuffled`` and the task's ``unkeyed_defaults`` while they
    hold their default (knobs that came after results were stored: those cells keep their keys)."""
    task = TASKS.get(name)
    return {
        key: value
        for key, value in knobs.items()
        if key != BATCH_SIZE_KNOB
        and not (key == ORDER_KNOB and value == ORDER_CHOICES[0])
        and not (key in task.unkeyed_defaults and value == task.knobs[key])
    }


def apply_init(model: nn.Module, config: TaskConfig, gain: float | None = None) -> None:
    """Apply the run's initialiser to ``model``; ``"default"`` keeps the model's own.

    Args:
        model: The freshly built model.
        config: The run's configuration (``config.init`` ``None``: nothing to do).
        gain: The gain Kaiming and orthogonal initialisation use; ``None``: the gain of the
            run's activation (1 if the task takes none).
    """
    if config.init is None:
        return
    if gain is None:
        gain = activation_gain(config.activation, config.activation_params) if config.activation else 1.0
    initialise(model, config.init, gain, config.init_params)
