"""Suite specs and their expansion into ``Cell``s, the unit of work.

A suite is a list of grids; each grid is the product of its axes (tasks x optimizers x
activations x inits x clips x learning rates x seeds x steps x batch sizes). A suite file is
TOML: top-level keys are defaults for every ``[[grid]]`` table, and a file without ``[[grid]]``
tables is one grid::

    name = "relu-vs-sigmoid"
    tasks = ["mnist1d_mlp[depth=8]"]
    seeds = [0, 1, 2]
    steps = 1000

    [[grid]]
    activations = ["sigmoid"]
    inits = ["standard"]

    [[grid]]
    activations = ["relu"]
    inits = ["kaiming_normal"]

Everything is validated here, before anything trains or is written: names against their
registries, hyper-parameters against torch's own checks, knobs against the task. A ``Cell``'s
``key`` is a hash of its full configuration, so the same cell always has the same key and a
rerun can skip it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any

from gradbench.activations import ACTIVATIONS, check_activation
from gradbench.clipping import parse_clipping
from gradbench.env import check_device, parse_device
from gradbench.init import INITS, check_init_params
from gradbench.monitor import DEFAULT_EVERY, DETAIL_FACTOR
from gradbench.optimizers import get_optimizer, resolve_hyperparameters
from gradbench.specs import format_spec, parse_spec
from gradbench.tasks import TASKS, resolve_knobs
from gradbench.tasks.base import BATCH_SIZE_KNOB, keyed_knobs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Cell", "Suite", "SuiteError", "AXES", "SETTINGS", "load_suite", "default_suite", "parse_suite", "expand"]

# Axis name -> default values; every grid is the product of these.
AXES: dict[str, list[Any]] = {
    "tasks": ["mnist1d_mlp"],
    "optimizers": ["sgd"],
    "activations": ["relu"],
    "inits": ["default"],
    "clips": ["none"],
    "lrs": [None],  # None: the optimizer's own default learning rate
    "seeds": [0],
    "steps": [500],
    "batch_sizes": [None],  # None: the task's default batch size
}
# Single-valued settings shared by the whole grid.
# record_every: per-layer gradient norms every 10 steps cost about 0.5% of a small CPU step (every
# step, about 5%); detail_every: weight norms, update ratios and activation statistics (None:
# DETAIL_FACTOR x record_every). See gradbench.monitor.
# validation: the fraction of the training set held out as a validation split (0: none), which
# tuned tables (gradbench.tuning) choose learning rates on.
SETTINGS: dict[str, Any] = {
    "device": "cpu", "threads": 1, "eval_every": None, "record_every": DEFAULT_EVERY, "detail_every": None, "validation": 0.0,
}
_META = ("name", "description")


class SuiteError(ValueError):
    """A suite that cannot be run; the message names the bad value (and the line in a file)."""


@dataclass(frozen=True)
class Cell:
    """One training run, fully specified. Frozen and hashable; ``key`` is stable across runs.

    Attributes:
        task, task_knobs: Task name and its knobs, defaults filled in, except ``batch_size``
            (the ``batch_size`` field below) and knobs added to a task after results could be
            stored, while at their default (``Task.unkeyed_defaults``): so a cell keeps its key.
        optimizer, hyperparameters: Optimizer name and all its hyper-parameters (``lr`` included).
        activation, init: Canonical specs (``leaky_relu[negative_slope=0.2]``), ``None`` where
            the task takes none.
        clip: ``none``, ``norm:C`` or ``value:C``.
        seed: Seeds the model's initialisation and the batch order.
        steps: Optimizer steps.
        batch_size: Mini-batch size; ``None`` for full-batch optimizers (every step sees the
            whole training set).
        device, threads: Where to run, and torch's CPU thread count.
        eval_every: Steps between evaluations of the test metric (steps-to-target resolution).
        record_every: Steps between records of per-layer gradient norms (0: none).
        detail_every: Steps between records of weight norms, update ratios and activation
            statistics (a multiple of ``record_every``; 0: none).
        validation: Fraction of the training set held out, never trained on, and evaluated with
            the test set (0: no validation split).
    """

    task: str
    task_knobs: tuple[tuple[str, Any], ...]
    optimizer: str
    hyperparameters: tuple[tuple[str, Any], ...]
    activation: str | None
    init: str | None
    clip: str
    seed: int
    steps: int
    batch_size: int | None
    device: str
    threads: int
    eval_every: int
    record_every: int
    detail_every: int
    validation: float = 0.0

    @property
    def lr(self) -> float:
        return float(dict(self.hyperparameters)["lr"])

    @property
    def task_label(self) -> str:
        task = TASKS.get(self.task) if self.task in TASKS else None
        defaults = dict(task.knobs) if task else {}
        changed = {k: v for k, v in self.task_knobs if defaults.get(k) != v}
        return format_spec(self.task, changed)

    @property
    def optimizer_label(self) -> str:
        return format_spec(self.optimizer, dict(self.hyperparameters))

    def config(self) -> dict[str, Any]:
        """The full configuration as JSON-ready values."""
        return {
            "task": self.task,
            "task_knobs": dict(self.task_knobs),
            "optimizer": self.optimizer,
            "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in self.hyperparameters},
            "activation": self.activation,
            "init": self.init,
            "clip": self.clip,
            "seed": self.seed,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "device": self.device,
            "threads": self.threads,
            "eval_every": self.eval_every,
            "record_every": self.record_every,
            # Left out at 0 (no detailed records, as before they existed), so the cells stored
            # then keep their keys.
            **({"detail_every": self.detail_every} if self.detail_every else {}),
            # Left out at 0 (no validation split, as before it existed): stored keys stay.
            **({"validation": self.validation} if self.validation else {}),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Cell:
        def items(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
            return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()))

        fields = dict(config)
        fields.setdefault("detail_every", 0)  # stored before detail records existed
        fields.setdefault("validation", 0.0)  # stored before validation splits existed
        fields["task_knobs"] = items(config["task_knobs"])
        fields["hyperparameters"] = items(config["hyperparameters"])
        return cls(**fields)

    @property
    def key(self) -> str:
        canonical = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = [self.task_label, self.optimizer_label]
        parts += [p for p in (self.activation, self.init) if p]
        parts += [f"clip={self.clip}", f"seed={self.seed}"]
        return " ".join(parts)


@dataclass(frozen=True)
class Suite:
    """A named list of grids, each a mapping of axis or setting -> values, plus where it came from."""

    name: str = "custom"
    description: str = ""
    grids: tuple[Mapping[str, Any], ...] = field(default_factory=lambda: ({},))
    source: str | None = None  # the file it was read from, for error messages
    text: str | None = None  # the file's text, to find the line of a bad value
    overridden: frozenset[str] = frozenset()  # keys set from the command line, not the file

    def with_overrides(self, overrides: Mapping[str, Any]) -> Suite:
        """The suite with each given axis or setting replaced in every grid (CLI flags)."""
        if not overrides:
            return self
        return replace(
            self,
            grids=tuple({**grid, **overrides} for grid in self.grids),
            overridden=self.overridden | frozenset(overrides),
        )


def _line_of(suite: Suite, grid_index: int, key: str) -> int | None:
    """Line number of ``key = ...`` in the suite file, in grid ``grid_index`` or the top level."""
    if suite.text is None:
        return None
    lines = suite.text.splitlines()
    section, found_top = -1, None
    # A key may be quoted ("steps" = 5); the 'grid' key may be a [grid] or [grid.x] table.
    pattern = re.compile(rf"""\s*(["']?){re.escape(key)}\1\s*=""" + (r"|\s*\[\s*grid\b" if key == "grid" else ""))
    for number, line in enumerate(lines, start=1):
        if re.match(r"\s*\[\[\s*grid\s*\]\]", line):
            section += 1
        elif pattern.match(line):
            if section == grid_index:
                return number
            if section == -1:
                found_top = number
    return found_top


# The command-line flag that sets each key, to name it in errors.
FLAGS = {
    "tasks": "--task", "optimizers": "--optimizer", "activations": "--activation", "inits": "--init",
    "clips": "--clip", "lrs": "--lr", "seeds": "--seeds", "steps": "--steps", "batch_sizes": "--batch-size",
    "device": "--device", "threads": "--threads", "eval_every": "--eval-every", "record_every": "--record-every",
    "detail_every": "--detail-every", "validation": "--validation",
}


def _fail(suite: Suite, grid_index: int, key: str, message: str) -> SuiteError:
    if key in suite.overridden:
        return SuiteError(f"{FLAGS.get(key, key)}: {message}")
    if suite.source is None:
        return SuiteError(message)
    line = _line_of(suite, grid_index, key)
    where = f"{suite.source}, line {line}" if line else suite.source
    return SuiteError(f"{where}: {message}")


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Parse a TOML suite; errors name the file and line.

    Raises:
        SuiteError: for malformed TOML, unknown keys or values of the wrong shape.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{source}: malformed TOML: {error}") from None
    suite = Suite(source=source, text=text)
    known = set(AXES) | set(SETTINGS)
    top = {k: v for k, v in document.items() if k != "grid"}
    for key in top:
        if key not in known and key not in _META:
            raise _fail(suite, -1, key, f"unknown key {key!r}; valid keys: {', '.join([*_META, *AXES, *SETTINGS, 'grid'])}")
    grids = document.get("grid", [{}])
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise _fail(suite, -1, "grid", "'grid' must be a list of tables: write [[grid]]")
    for index, grid in enumerate(grids):
        for key in grid:
            if key not in known:
                raise _fail(suite, index, key, f"unknown key {key!r} in [[grid]] {index + 1}; valid keys: {', '.join([*AXES, *SETTINGS])}")
    defaults = {k: v for k, v in top.items() if k in known}
    for key in _META:
        if key in top and not isinstance(top[key], str):
            raise _fail(suite, -1, key, f"{key!r} must be a string")
    return replace(
        suite,
        name=top.get("name", Path(source).stem),
        description=top.get("description", ""),
        grids=tuple({**defaults, **grid} for grid in grids),
    )


def load_suite(path: str | Path) -> Suite:
    """Read a suite file.

    Raises:
        SuiteError: if it cannot be read or parsed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SuiteError(f"cannot read suite file {str(path)!r}: {getattr(error, 'strerror', None) or error}") from None
    return parse_suite(text, str(path))


def default_suite() -> Suite:
    """The built-in default suite (``gradbench/suites/default.toml``)."""
    text = resources.files("gradbench").joinpath("suites/default.toml").read_text(encoding="utf-8")
    return parse_suite(text, "default suite")


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
    if key in ("tasks", "optimizers", "activations", "inits"):
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
    if key in ("steps", "batch_sizes"):
        for value in values:
            if not (_integer(value, 1) or (key == "batch_sizes" and value is None)):
                raise ValueError(f"invalid {key[:-1] if key.endswith('s') else key} {value!r}: must be an integer from 1 to 2**31-1")
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
            raise _fail(suite, index, key, str(error)) from None
    settings: dict[str, Any] = {}
    for key, default in SETTINGS.items():
        try:
            settings[key] = _check_setting(key, grid.get(key, default), local_devices)
        except ValueError as error:
            raise _fail(suite, index, key, str(error)) from None

    detail_every = settings["detail_every"]
    if detail_every is None:
        detail_every = DETAIL_FACTOR * settings["record_every"]
    elif detail_every and (settings["record_every"] == 0 or detail_every % settings["record_every"]):
        message = f"invalid detail_every {detail_every}: must be 0 or a multiple of record_every ({settings['record_every']})"
        raise _fail(suite, index, "detail_every", message)

    def checked(key: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except ValueError as error:
            raise _fail(suite, index, key, str(error)) from None

    tasks = []
    batch_axis_set = any(value is not None for value in axes["batch_sizes"])
    for name, params in axes["tasks"]:
        knobs = checked("tasks", resolve_knobs, name, params)
        # A task's batch_size knob is its default batch size; the batch_sizes axis sets it for
        # every task. Both at once would leave one silently ignored, so that is an error.
        if BATCH_SIZE_KNOB in params and batch_axis_set:
            raise _fail(suite, index, "tasks", f"{format_spec(name, params)} sets batch_size, and so does batch_sizes (--batch-size): set it in one place")
        tasks.append((name, keyed_knobs(name, knobs), knobs[BATCH_SIZE_KNOB]))
    activations = []
    for name, params in axes["activations"]:
        checked("activations", check_activation, name, params)
        activations.append(format_spec(name, _canonical(params, _activation_defaults(name))))
    inits = []
    for name, params in axes["inits"]:
        checked("inits", check_init_params, name, params)
        inits.append(format_spec(name, _canonical(params, INITS.get(name).params)))
    optimizers = []
    for name, params in axes["optimizers"]:
        for lr in axes["lrs"]:
            overrides = dict(params) if lr is None else {**params, "lr": float(lr)}
            key = "lrs" if lr is not None else "optimizers"
            optimizers.append((name, checked(key, resolve_hyperparameters, name, overrides)))
    for task_name, knobs, task_batch_size in tasks:
        task = TASKS.get(task_name)
        for batch_size in axes["batch_sizes"]:
            size = batch_size or task_batch_size
            examples = task.train_size(resolve_knobs(task_name, knobs)) if task.train_size is not None else None
            if examples is not None and settings["validation"]:
                # What the validation split leaves (Dataset.with_validation rounds the same way).
                examples -= max(1, round(settings["validation"] * examples))
            if examples is not None and size > examples:
                message = f"batch size {size} is larger than the training set of {format_spec(task_name, knobs)} ({examples} examples)"
                raise _fail(suite, index, "batch_sizes" if batch_size else "tasks", message)
    for (task_name, knobs, task_batch_size), (opt_name, hyper), activation, init, clip, seed, steps, batch_size in product(
        tasks, optimizers, activations, inits, axes["clips"], axes["seeds"], axes["steps"], axes["batch_sizes"]
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
            batch_size=None if full_batch else (batch_size or task_batch_size),
            device=settings["device"],
            threads=settings["threads"],
            eval_every=settings["eval_every"] or max(1, steps // 20),
            record_every=settings["record_every"],
            detail_every=detail_every,
            validation=settings["validation"],
        )


def expand(suite: Suite, *, local_devices: bool = True) -> list[Cell]:
    """All cells of the suite, in grid order, without duplicates (by key).

    Args:
        suite: The suite.
        local_devices: Check that each device exists here (``cuda`` needs CUDA in this
            process). ``False`` checks the spelling only: for cells that run elsewhere (a Ray
            cluster's GPU nodes, driven from a machine without one).

    Raises:
        SuiteError: for any invalid value, naming it (and its line in a suite file).
    """
    cells: dict[str, Cell] = {}
    for index, grid in enumerate(suite.grids):
        for cell in _expand_grid(suite, index, grid, local_devices):
            cells.setdefault(cell.key, cell)
    return list(cells.values())
