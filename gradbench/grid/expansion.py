"""Expansion of a suite into ``Cell``s, the unit of work.

Everything is validated here, before anything trains or is written: names against their
registries, hyper-parameters against torch's own checks, knobs against the task, and the grid's
size (counted before a cell is built) against a limit.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from itertools import product
from typing import Any

import torch

from gradbench.axes.activations import ACTIVATIONS, check_activation
from gradbench.axes.clipping import parse_clipping
from gradbench.axes.devices import check_device, parse_device
from gradbench.axes.inits import check_init_params, init_defaults
from gradbench.axes.optimizers import build_optimizer, get_optimizer, resolve_hyperparameters
from gradbench.axes.precision import check_compile, check_precision
from gradbench.axes.schedules import CONSTANT, check_schedule, check_schedule_on, schedule_defaults
from gradbench.axes.specs import format_spec, parse_spec
from gradbench.grid.cell import Cell
from gradbench.grid.suite import AXES, SETTINGS, Suite, SuiteError, suite_error
from gradbench.monitor.gradient_monitor import DETAIL_FACTOR
from gradbench.tasks import TASKS, resolve_knobs
from gradbench.tasks.base import BATCH_SIZE_KNOB, keyed_knobs

__all__ = ["expand", "grid_size", "MAX_CELLS", "FULL_BATCH"]

# A batch size meaning the whole training set every step (a cell's batch_size None), for any
# optimizer; full-batch optimizers (gd) take it whatever the axis says.
FULL_BATCH = "full"

# More cells than this is refused before any is built (``--max-cells`` raises it): a typo such
# as ``--seeds 0-10000000`` would otherwise fill the memory before anything is printed. A cell
# takes seconds at the least, so 100 000 of them is days of one machine.
MAX_CELLS = 100_000


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


_INT32_MAX = 2**31 - 1
_SEED_MAX = 2**63 - 1  # what SQLite's INTEGER and torch.manual_seed both hold
_THREADS_MAX = 1024  # far above any machine; torch crashes on absurd counts


def _integer(value: Any, minimum: int, maximum: int = _INT32_MAX) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def _canonical(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters without those equal to their defaults, ints made floats where the default is
    a float: ``leaky_relu[negative_slope=0.01]`` is ``leaky_relu``, one cell with one key."""
    canonical = {}
    for key, value in params.items():
        default = defaults.get(key, inspect.Parameter.empty)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value != default or type(value) is not type(default):
            canonical[key] = value
    return canonical


def _activation_defaults(name: str) -> dict[str, Any]:
    signature = inspect.signature(ACTIVATIONS.get(name).module_class.__init__)
    return {key: p.default for key, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


def _check_axis(key: str, values: list[Any]) -> list[Any]:
    """Check the shape of one axis's values; returns them parsed where they are spec strings."""
    if not values:
        raise ValueError(f"{key!r} is empty")
    if key in ("tasks", "optimizers", "activations", "inits", "schedules"):
        parsed = []
        for value in values:
            if not isinstance(value, str):
                raise ValueError(f"invalid {key} entry {value!r}: expected a name like 'adam' or 'adam[lr=0.01]'")
            parsed.append(parse_spec(value))
        return parsed
    if key == "clips":
        for value in values:
            if not isinstance(value, str):
                raise ValueError(f"invalid clip {value!r}; forms: none, norm:C, value:C")
        return [parse_clipping(value).label for value in values]
    if key == "lrs":
        for value in values:
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"invalid learning rate {value!r}: must be a positive number")
        return values
    if key == "seeds":
        for value in values:
            if not _integer(value, 0, _SEED_MAX):
                raise ValueError(f"invalid seed {value!r}: must be an integer from 0 to 2**63-1")
        return values
    if key == "steps":
        for value in values:
            if not _integer(value, 1):
                raise ValueError(f"invalid step {value!r}: must be an integer from 1 to 2**31-1")
        return values
    if key == "batch_sizes":
        for value in values:
            if not (_integer(value, 1) or value is None or value == FULL_BATCH):
                raise ValueError(f"invalid batch_size {value!r}: must be an integer from 1 to 2**31-1, or {FULL_BATCH!r} (the whole training set)")
        return values
    raise AssertionError(key)


def _check_setting(key: str, value: Any, local_devices: bool = True) -> Any:
    if key == "device":
        if not isinstance(value, str):
            raise ValueError(f"invalid device {value!r}; choose from: cpu, cuda, cuda:N")
        device = check_device(value) if local_devices else parse_device(value)
        return "cpu" if device.type == "cpu" else value  # 'cpu:3' is the same CPU
    if key == "threads" and not _integer(value, 1, _THREADS_MAX):
        raise ValueError(f"invalid threads {value!r}: must be an integer from 1 to {_THREADS_MAX}")
    if key == "eval_every" and not (value is None or _integer(value, 1)):
        raise ValueError(f"invalid eval_every {value!r}: must be an integer from 1 to 2**31-1")
    if key == "record_every" and not _integer(value, 0):
        raise ValueError(f"invalid record_every {value!r}: must be an integer >= 0 (0: no gradient records)")
    if key == "detail_every" and not (value is None or _integer(value, 0)):
        raise ValueError(f"invalid detail_every {value!r}: must be an integer >= 0 (0: no weight norms, update ratios or activation statistics)")
    if key == "jacobian_every" and not _integer(value, 0):
        raise ValueError(f"invalid jacobian_every {value!r}: must be an integer >= 0 (0: no Jacobian statistics)")
    if key == "validation":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"invalid validation {value!r}: must be a fraction of the training set, at least 0 and below 1 (0: no validation split)")
        return float(value)
    return value


def _expand_grid(suite: Suite, index: int, grid: Mapping[str, Any], local_devices: bool) -> Iterable[Cell]:
    axes: dict[str, list[Any]] = {}
    for key, default in AXES.items():
        try:
            axes[key] = _check_axis(key, _as_list(grid.get(key, default)))
        except ValueError as error:
            raise suite_error(suite, index, key, str(error)) from None
    settings: dict[str, Any] = {}
    for key, default in SETTINGS.items():
        try:
            settings[key] = _check_setting(key, grid.get(key, default), local_devices)
        except ValueError as error:
            raise suite_error(suite, index, key, str(error)) from None

    # Precision and compilation depend on the device: checked against it where it runs here.
    device = parse_device(settings["device"]) if local_devices else None
    for key, check in (("precision", check_precision), ("compile", check_compile)):
        try:
            settings[key] = check(settings[key], device)
        except ValueError as error:
            raise suite_error(suite, index, key, str(error)) from None

    detail_every = settings["detail_every"]
    if detail_every is None:
        detail_every = DETAIL_FACTOR * settings["record_every"]
    elif detail_every and (settings["record_every"] == 0 or detail_every % settings["record_every"]):
        message = f"invalid detail_every {detail_every}: must be 0 or a multiple of record_every ({settings['record_every']})"
        raise suite_error(suite, index, "detail_every", message)

    def checked(key: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except ValueError as error:
            raise suite_error(suite, index, key, str(error)) from None

    tasks = []
    batch_axis_set = any(value is not None for value in axes["batch_sizes"])
    for name, params in axes["tasks"]:
        knobs = checked("tasks", resolve_knobs, name, params)
        # A task's batch_size knob is its default batch size; the batch_sizes axis sets it for
        # every task. Both at once would leave one silently ignored, so that is an error.
        if BATCH_SIZE_KNOB in params and batch_axis_set:
            raise suite_error(suite, index, "tasks", f"{format_spec(name, params)} sets batch_size, and so does batch_sizes (--batch-size): set it in one place")
        tasks.append((name, keyed_knobs(name, knobs), knobs[BATCH_SIZE_KNOB]))
    activations = []
    for name, params in axes["activations"]:
        checked("activations", check_activation, name, params)
        activations.append(format_spec(name, _canonical(params, _activation_defaults(name))))
    inits = []
    for name, params in axes["inits"]:
        checked("inits", check_init_params, name, params)
        inits.append(format_spec(name, _canonical(params, init_defaults(name))))
    schedules = []
    for name, params in axes["schedules"]:
        resolved = checked("schedules", check_schedule, name, params)
        schedules.append(format_spec(name, _canonical({key: resolved[key] for key in params}, schedule_defaults(name))))
    optimizers = []
    for name, params in axes["optimizers"]:
        for lr in axes["lrs"]:
            overrides = dict(params) if lr is None else {**params, "lr": float(lr)}
            key = "lrs" if lr is not None else "optimizers"
            optimizers.append((name, checked(key, resolve_hyperparameters, name, overrides)))
    if settings["precision"] == "fp16":
        for opt_name, _ in optimizers:
            if get_optimizer(opt_name).needs_closure:
                # torch.amp.GradScaler.step refuses closures: L-BFGS cannot run under a loss scaler.
                raise suite_error(suite, index, "precision", f"precision 'fp16' runs with a loss scaler, which cannot drive {opt_name!r} (its step takes a closure); choose from: fp32, tf32, bf16")
    for opt_name, hyper in optimizers:  # what torch refuses only with the optimizer in hand
        for schedule in schedules:
            if schedule != CONSTANT:
                for steps in axes["steps"]:
                    dummy = build_optimizer(opt_name, [torch.nn.Parameter(torch.zeros(1))], hyper)
                    checked("schedules", check_schedule_on, schedule, format_spec(opt_name, hyper), dummy, steps)
    for task_name, knobs, task_batch_size in tasks:
        task = TASKS.get(task_name)
        for batch_size in axes["batch_sizes"]:
            if batch_size == FULL_BATCH:
                continue
            size = batch_size or task_batch_size
            examples = task.train_size(resolve_knobs(task_name, knobs)) if task.train_size is not None else None
            if examples is not None and settings["validation"]:
                # What the validation split leaves (Dataset.with_validation rounds the same way).
                examples -= max(1, round(settings["validation"] * examples))
            if examples is not None and size > examples:
                message = f"batch size {size} is larger than the training set of {format_spec(task_name, knobs)} ({examples} examples)"
                raise suite_error(suite, index, "batch_sizes" if batch_size else "tasks", message)
    for (task_name, knobs, task_batch_size), (opt_name, hyper), activation, init, clip, seed, steps, batch_size, schedule in product(
        tasks, optimizers, activations, inits, axes["clips"], axes["seeds"], axes["steps"], axes["batch_sizes"], schedules
    ):
        task = TASKS.get(task_name)
        full_batch = get_optimizer(opt_name).full_batch
        yield Cell(
            task=task_name,
            task_knobs=tuple(sorted(knobs.items())),
            optimizer=opt_name,
            hyperparameters=tuple(sorted(hyper.items())),
            activation=activation if task.uses_activation else None,
            init=init if task.uses_init else None,
            clip=clip,
            seed=seed,
            steps=steps,
            batch_size=None if full_batch or batch_size == FULL_BATCH else (batch_size or task_batch_size),
            device=settings["device"],
            threads=settings["threads"],
            eval_every=settings["eval_every"] or max(1, steps // 20),
            record_every=settings["record_every"],
            detail_every=detail_every,
            validation=settings["validation"],
            schedule=schedule,
            jacobian_every=settings["jacobian_every"],
            precision=settings["precision"],
            compile=settings["compile"],
        )


_AXIS_WORDS = {"lrs": "learning rates", "steps": "step budgets", "batch_sizes": "batch sizes"}


def grid_size(grid: Mapping[str, Any]) -> tuple[int, str]:
    """How many cells ``grid`` asks for (before duplicates are merged), and the product that
    gives it (``2 optimizers x 3 seeds``), counted without building any."""
    size, factors = 1, []
    for key, default in AXES.items():
        count = len(_as_list(grid.get(key, default)))
        size *= count
        if count != 1:
            factors.append(f"{count} {_AXIS_WORDS.get(key, key)}")
    return size, " x ".join(factors) or "1 cell"


def expand(suite: Suite, *, local_devices: bool = True, max_cells: int = MAX_CELLS) -> list[Cell]:
    """All cells of the suite, in grid order, without duplicates (by key).

    Args:
        suite: The suite.
        local_devices: Check that each device exists here (``cuda`` needs CUDA in this
            process). ``False`` checks the spelling only: for cells that run elsewhere (a Ray
            cluster's GPU nodes, driven from a machine without one).
        max_cells: The most cells the suite may ask for, counted before any is built.

    Raises:
        SuiteError: for any invalid value, naming it (and its line in a suite file), or a
            suite larger than ``max_cells``.
    """
    sizes = [grid_size(grid) for grid in suite.grids]
    total = sum(size for size, _ in sizes)
    if total > max_cells:
        biggest = max(range(len(sizes)), key=lambda index: sizes[index][0])
        shape = sizes[biggest][1] + (f" in grid {biggest + 1} of {len(sizes)}" if len(sizes) > 1 else "")
        raise SuiteError(f"the suite asks for {total} cells ({shape}), more than the limit of {max_cells}; raise it with --max-cells {total} (expand(..., max_cells=N) from Python)")
    cells: dict[str, Cell] = {}
    for index, grid in enumerate(suite.grids):
        for cell in _expand_grid(suite, index, grid, local_devices):
            cells.setdefault(cell.key, cell)
    return list(cells.values())
