"""Pivot tables of one metric, from stored runs: rows x columns of chosen axes, seeds aggregated.

Every run is described by its *axes* (``run_axes``): the optimizer (with the hyper-parameters
that differ from its defaults), ``lr``, ``activation``, ``init``, ``clip``, ``batch_size``,
``steps``, the run settings, and each knob of its task (``depth``, ``width``, ``norm``, ...).
A pivot puts some axes on the rows (default ``optimizer``) and some on the columns (default
``activation``); a cell aggregates the runs that differ only in their seed.

Runs that differ in any other axis are never merged into one cell: each task gets one table,
and every other axis that varies among its runs joins the rows, named in the row label (two
optimizers at their own learning rates, two clips: ``sgd, lr=0.1, clip=none`` and
``adam, lr=0.001, clip=norm:1`` are rows of one table), as performance profiles name solvers.
Tables are split further only by the axes asked for (``split``, ``--split``). Values shared
by every run are listed once (``PivotReport.constants``).

A cell holds the metric's mean and sample standard deviation over its ``done`` runs, their
count ``n``, and with two seeds or more the 95% bootstrap interval of the mean
(``seed_noise``); diverged and failed runs are counted, never averaged in. The best cell of a
column is marked (the lowest loss, steps, time; the highest accuracy; the first/last-layer
gradient ratio closest to 1 on a log scale) only where the column has two or more entries and
the best beats every other by more than the seed noise (``seed_noise.RULE``): one seed, or
overlapping seeds, mark nothing. Only cells whose every run finished (and, for steps or time to
target, reached the target) compete: a mean over the seeds that survived would flatter a
configuration that diverged on the others. Verdicts have no best.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradbench.axes.specs import parse_spec, shown
from gradbench.grid.labels import config_axes, knobs_of, label_of, task_label
from gradbench.report.flat import QUIET_DEFAULTS, config_text, verdict_text
from gradbench.report.seed_noise import clearly_better, mean_interval
from gradbench.tasks import TASKS, resolve_knobs
from gradbench.tasks.base import BATCH_SIZE_KNOB

__all__ = ["Metric", "METRICS", "CellStats", "Pivot", "PivotReport", "run_axes", "build_pivots", "axis_choices", "select_runs", "task_label", "aggregate", "knobs_of"]


@dataclass(frozen=True)
class Metric:
    """A metric a pivot can show.

    Attributes:
        name: The ``--metric`` name.
        title: Its heading.
        field: The run column it reads (``None`` for the verdict).
        better: ``lower``, ``higher``, ``one`` (closest to 1 in log scale) or ``None`` (no best).
        kind: How seeds aggregate and print: ``plain``, ``percent``, ``milliseconds``,
            ``seconds``, ``geometric`` (mean and std of log10), ``reached`` (only runs that
            reached the target have a value), ``bytes`` (printed in binary units), ``verdict``.
    """

    name: str
    title: str
    field: str | None
    better: str | None
    kind: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("train_loss", "final train loss", "final_train_loss", "lower", "plain"),
        Metric("test_loss", "final test loss", "final_test_loss", "lower", "plain"),
        Metric("test_accuracy", "test accuracy (%)", "final_test_accuracy", "higher", "percent"),
        Metric("validation_loss", "final validation loss", "final_validation_loss", "lower", "plain"),
        Metric("validation_accuracy", "validation accuracy (%)", "final_validation_accuracy", "higher", "percent"),
        Metric("steps_to_target", "steps to target", "steps_to_target", "lower", "reached"),
        Metric("time_to_target", "time to target (s)", "time_to_target_s", "lower", "reached"),
        Metric("step_time", "median wall step time (ms)", "median_step_time_s", "lower", "milliseconds"),  # CUDA-event time on a GPU
        Metric("step_cpu_time", "median CPU step time (ms)", "median_step_cpu_s", "lower", "milliseconds"),  # CPU runs only
        Metric("grad_ratio", "first/last-layer gradient ratio", "grad_ratio_first_last", "one", "geometric"),
        Metric("state_bytes", "optimizer state", "optimizer_state_bytes", "lower", "bytes"),
        Metric("peak_memory", "peak CUDA memory", "peak_memory_bytes", "lower", "bytes"),  # CUDA runs only
        Metric("verdict", "diagnosis", None, None, "verdict"),
    )
}

# Axes every run has, in display order; task knobs follow. Seeds are what cells aggregate over.
_RUN_AXES = ("optimizer", "lr", "schedule", "activation", "init", "clip", "batch_size", "steps")
_SETTINGS = ("device", "precision", "compile", "threads", "eval_every", "record_every", "detail_every", "validation", "jacobian_every")


def run_axes(run: Mapping[str, Any]) -> dict[str, Any]:
    """Every axis of a stored run (a ``Store.runs()`` row) but the task and seed: the run axes,
    the settings, any axis a newer gradbench added to the configuration, then the task's knobs
    (``gradbench.grid.labels.config_axes``)."""
    config = json.loads(run["config"])
    every = config_axes(config)
    knobs = knobs_of(config)
    axes = {name: value for name, value in every.items() if name not in ("task", "seed") and name not in knobs}
    axes.update(knobs)
    return axes


def axis_choices(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The axes the stored runs have (what ``--rows``, ``--columns`` and ``--where`` accept):
    the run axes, the task knobs, then the settings (``validation``, ``device``, ...), which
    already split tables when they vary and so must be selectable too."""
    names = list(_RUN_AXES)
    for run in runs:
        for name in run_axes(run):
            if name not in names and name not in _SETTINGS:
                names.append(name)
    return names + [name for name in _SETTINGS if name not in names]


@dataclass
class CellStats:
    """One pivot cell: the runs of one configuration, over seeds.

    Attributes:
        runs: How many runs (seeds); ``done``, ``diverged``, ``failed`` split them by status.
        values: The metric of each done run that has it (``reached`` metrics: that reached).
        mean, std: Of ``values`` (geometric metrics: geometric mean, std of log10 in decades);
            ``std`` is the sample standard deviation, 0 for one value; ``None`` without values.
        interval: The 95% bootstrap interval of the mean over seeds (``seed_noise``; geometric
            metrics: of the geometric mean); ``None`` for fewer than two values.
        verdict: The diagnosis text (``verdict`` metric).
        lr: The learning rate tuned mode chose (``None`` otherwise).
        best: The best cell of its column.
        keys: The run keys.
    """

    runs: int
    done: int
    diverged: int
    failed: int
    values: list[float]
    mean: float | None
    std: float | None
    verdict: str | None = None
    lr: float | None = None
    best: bool = False
    keys: list[str] = field(default_factory=list)
    interval: tuple[float, float] | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def complete(self) -> bool:
        """Every run finished and has a value: the cell may compete for best."""
        return self.runs > 0 and self.n == self.done == self.runs


@dataclass
class Pivot:
    """One table: a task (and one value of every other varying axis), rows x columns."""

    task: str
    split: dict[str, Any]
    row_axes: tuple[str, ...]
    column_axes: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    columns: list[tuple[Any, ...]]
    cells: dict[tuple[tuple[Any, ...], tuple[Any, ...]], CellStats]
    metric: Metric
    target: str | None = None
    several_lrs: bool = False  # some optimizer has rows at more than one learning rate

    @property
    def title(self) -> str:
        return self.task + "".join(f", {k}={config_text(v)}" for k, v in self.split.items())

    def row_label(self, row: tuple[Any, ...]) -> str:
        """A row named as every output names a configuration: ``sgd, lr=0.1, clip=none``."""
        return label_of(dict(zip(self.row_axes, row)), self.row_axes)


@dataclass
class PivotReport:
    """All the pivots of a store, the values every run shares, and how cells were chosen."""

    pivots: list[Pivot]
    constants: dict[str, Any]
    metric: Metric
    note: str | None = None  # e.g. how tuned mode chose learning rates


def aggregate(runs: Sequence[Mapping[str, Any]], metric: Metric, verdicts: Mapping[str, Sequence[str]] | None = None) -> CellStats:
    """One cell's statistics over its runs (seeds)."""
    done = [r for r in runs if r["status"] == "done"]
    diverged = sum(r["status"] == "diverged" for r in runs)
    values: list[float] = []
    if metric.field is not None:
        for run in done:
            value = run.get(metric.field)
            if value is not None and math.isfinite(value) and (metric.kind != "geometric" or value > 0):
                values.append(float(value))
    mean = std = interval = None
    if values:
        if metric.kind == "geometric":
            logs = [math.log10(v) for v in values]
            mean, std = 10 ** statistics.fmean(logs), (statistics.stdev(logs) if len(logs) > 1 else 0.0)
            found = mean_interval(logs)
            interval = (10 ** found[0], 10 ** found[1]) if found else None
        else:
            mean, std = statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
            interval = mean_interval(values)
    verdict = verdict_text(runs, verdicts or {}) if metric.kind == "verdict" else None
    counts = (len(runs), len(done), diverged, len(runs) - len(done) - diverged)
    return CellStats(*counts, values, mean, std, verdict, keys=[r["key"] for r in runs], interval=interval)


def _order(values: list[Any]) -> list[Any]:
    """First-seen order, but numbers ascending."""
    if all(isinstance(v, tuple) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in values):
        return sorted(values)
    return values


def _badness(cell: CellStats, better: str) -> float:
    assert cell.mean is not None
    if better == "lower":
        return cell.mean
    if better == "higher":
        return -cell.mean
    return abs(math.log10(cell.mean))


def _noise_values(cell: CellStats, better: str) -> tuple[list[float], Any]:
    """A cell's values over seeds and the badness of their mean, for ``clearly_better``
    (geometric metrics compare in log10, where their mean is taken)."""
    if better == "one":
        return [math.log10(v) for v in cell.values], abs
    return list(cell.values), ((lambda m: m) if better == "lower" else (lambda m: -m))


def _mark_best(pivot: Pivot) -> None:
    """Bold the best cell of a column only where there is a choice (two or more entries that
    compete) and it beats every other by more than the seed noise (``seed_noise.RULE``)."""
    better = pivot.metric.better
    if better is None:
        return
    for column in pivot.columns:
        cells = [pivot.cells[(row, column)] for row in pivot.rows if (row, column) in pivot.cells]
        competing = [c for c in cells if c.complete and c.mean is not None]
        if len(competing) < 2:
            continue
        best = min(competing, key=lambda c: _badness(c, better))
        values, badness = _noise_values(best, better)
        best.best = all(clearly_better(values, _noise_values(other, better)[0], badness) for other in competing if other is not best)


def _target_text(run: Mapping[str, Any]) -> str | None:
    if run.get("target") is None:
        return None
    if run.get("metric") == "accuracy":
        return f"test accuracy >= {100 * run['target']:.0f}%"
    return f"test loss <= {run['target']:.4g}"


def build_pivots(
    runs: Sequence[Mapping[str, Any]],
    rows: Sequence[str] = ("optimizer",),
    columns: Sequence[str] = ("activation",),
    metric: str = "train_loss",
    verdicts: Mapping[str, Sequence[str]] | None = None,
    lrs: Mapping[str, float] | None = None,
    split: Sequence[str] = (),
) -> PivotReport:
    """The pivots of ``runs``: one per task (with its knobs) and, only where asked, per value of
    the ``split`` axes. Every other axis that varies among a table's runs joins its rows, named
    in the row label (``sgd, lr=0.1, clip=none``), so configurations that differ only there are
    side by side and never merged.

    Args:
        runs: Run rows (``Store.runs()``), or those tuned mode kept.
        rows, columns: Axis names (``axis_choices``); each at most once, in one of the two.
        split: Axes whose values get a table each (``--split``).
        metric: A ``METRICS`` name.
        verdicts: Each run's verdict names by key (the ``verdict`` metric).
        lrs: The chosen learning rate of each run key (tuned mode), shown in its cell; ``lr``
            is then no axis (not a row, column or split).

    Raises:
        ValueError: for an unknown metric or axis, or an axis given twice.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown --metric {metric!r}; choose from: {', '.join(METRICS)}")
    chosen = METRICS[metric]
    choices = axis_choices(runs) if runs else list(_RUN_AXES)
    for flag, names in (("--rows", rows), ("--columns", columns), ("--split", split)):
        if not names and flag != "--split":
            raise ValueError(f"{flag} is empty; choose from: {', '.join(choices)}")
        for name in names:
            if name not in choices:
                raise ValueError(f"unknown {flag} axis {name!r}; choose from: {', '.join(choices)}")
    placed = (*rows, *columns, *split)
    repeated = [name for name in placed if placed.count(name) > 1]
    if repeated:
        raise ValueError(f"axis {repeated[0]!r} is given twice in --rows/--columns/--split; each axis goes in one place")
    if lrs is not None and "lr" in split:
        raise ValueError("--tuned chooses the learning rate, so lr cannot be a --split axis")
    shown = set(rows) | set(columns)
    described = [(run, run_axes(run)) for run in runs]
    if lrs is not None:
        # Tuned: each cell's learning rate was chosen (and is printed in the cell); it neither
        # splits tables nor is shared by every run.
        for _, axes in described:
            del axes["lr"]
    # Axes that vary across the runs split tables; the rest are listed once.
    every = {name for _, axes in described for name in axes}
    varying = {name for name in every if len({json.dumps(axes.get(name), sort_keys=True) for _, axes in described}) > 1}
    knob_names = {name for run, _ in described for name in knobs_of(json.loads(run["config"]))}
    # Shared values are listed once, in display order; knobs are in each table's title instead.
    constants = {
        name: described[0][1].get(name)
        for name in (*_RUN_AXES, *_SETTINGS)
        if described and name in every and name not in varying and name not in shown and name not in knob_names
    }
    # No split, no schedule, no Jacobians: the defaults, not worth a word.
    constants = {name: value for name, value in constants.items() if name not in QUIET_DEFAULTS or QUIET_DEFAULTS[name] != value}
    groups: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = {}
    for run, axes in described:
        config = json.loads(run["config"])
        knobs = {k: v for k, v in knobs_of(config).items() if k not in shown}
        asked = {k: v for k, v in axes.items() if k in split}
        identity = json.dumps([task_label(config["task"], knobs), asked], sort_keys=True, default=str)
        groups.setdefault(identity, []).append((run, axes))
    pivots = []
    for identity, members in groups.items():
        title, _ = json.loads(identity)
        # Axes varying within this table join the rows; those that vary across the store but
        # not here (a batch size per task) are named in the title with the asked splits.
        inside = {name for name in varying if len({json.dumps(a.get(name), sort_keys=True) for _, a in members}) > 1}
        free = [name for name in members[0][1] if name in varying and name not in shown and name not in split and name not in knob_names]
        folded = [name for name in free if name in inside]
        row_axes = (*rows, *folded)
        heading = {k: v for k, v in members[0][1].items() if k in split or (k in free and k not in inside)}  # axis order; floats stay floats
        # .get: a knob of one task is no axis of another (None, printed "-").
        row_values = _order(list(dict.fromkeys(tuple(a.get(n) for n in row_axes) for _, a in members)))
        column_values = _order(list(dict.fromkeys(tuple(a.get(n) for n in columns) for _, a in members)))
        by_cell: dict[tuple[tuple[Any, ...], tuple[Any, ...]], list[Mapping[str, Any]]] = {}
        for run, axes in members:
            by_cell.setdefault((tuple(axes.get(n) for n in row_axes), tuple(axes.get(n) for n in columns)), []).append(run)
        cells = {}
        for position, cell_runs in by_cell.items():
            cells[position] = aggregate(cell_runs, chosen, verdicts)
            if lrs is not None:
                cells[position].lr = lrs.get(cell_runs[0]["key"])
        targets = {t for t in (_target_text(run) for run, _ in members) if t}
        pivot = Pivot(title, heading, row_axes, tuple(columns), row_values, column_values, cells, chosen, "; ".join(sorted(targets)) or None)
        if "lr" in row_axes and "optimizer" in row_axes:
            pivot.several_lrs = len({(a["optimizer"], a["lr"]) for _, a in members}) > len({a["optimizer"] for _, a in members})
        _mark_best(pivot)
        pivots.append(pivot)
    return PivotReport(pivots, constants, chosen)


def _matches(value: Any, wanted: str) -> bool:
    # Booleans as suites spell them (compile=true) as well as Python does (True).
    if isinstance(value, bool):
        return wanted.lower() == str(value).lower()
    # Numbers compare as numbers: validation=0 matches a stored 0.0 and validation=0.20 a 0.2.
    if isinstance(value, (int, float)):
        try:
            return math.isclose(value, float(wanted), rel_tol=1e-9)
        except ValueError:
            return False
    return config_text(value) == wanted or str(value) == wanted


def select_runs(runs: Sequence[Mapping[str, Any]], where: Mapping[str, Sequence[str]]) -> list[Mapping[str, Any]]:
    """The runs whose every ``where`` axis has one of the given values (as text: ``lr=0.01``,
    ``optimizer=adam``, ``task=mnist1d_mlp`` or the full task label, ``seed=0``, ``status=done``,
    a setting: ``validation=0.1``, ``device=cpu``). A task with knobs matches in any spelling
    ``run`` accepts (knobs in any order, defaults given or left out).

    Raises:
        ValueError: for an axis no stored run has.
    """
    if not where:
        return list(runs)
    choices = ["task", "seed", "status", *axis_choices(runs)]
    for name in where:
        if name not in choices:
            raise ValueError(f"unknown --where axis {name!r}; choose from: {', '.join(choices)}")
    specs = [_task_spec(text) for text in where.get("task", [])]
    kept = []
    for run in runs:
        axes = run_axes(run)
        config = json.loads(run["config"])
        axes.update(seed=config["seed"], status=run["status"])
        for name, wanted in where.items():
            if name == "task":
                matched = any(_matches(value, text) for value in (config["task"], run["task"]) for text in wanted)
                matched = matched or any(spec is not None and _task_matches(config, *spec) for spec in specs)
            else:
                matched = any(_matches(axes.get(name), text) for text in wanted)
            if not matched:
                break
        else:
            kept.append(run)
    return kept


def _task_spec(text: str) -> tuple[str, dict[str, Any], int | None] | None:
    """A ``--where task=`` value with knobs, as ``run`` reads it: the name, every knob (defaults
    filled in, so any spelling of one configuration is one value) and the batch size it sets.
    ``None`` for a bare name or a task no longer registered (matched as text only).

    Raises:
        ValueError: for a malformed spec or a knob the task does not have.
    """
    if "[" not in text:
        return None
    try:
        name, params = parse_spec(text)
    except ValueError as error:
        raise ValueError(f"invalid --where task {shown(text)}: {error}") from None
    if name not in TASKS:
        return None
    try:
        knobs = resolve_knobs(name, params)
    except ValueError as error:
        raise ValueError(f"invalid --where task {shown(text)}: {error}") from None
    batch_size = knobs.pop(BATCH_SIZE_KNOB, None)
    return name, json.loads(json.dumps(knobs)), batch_size if BATCH_SIZE_KNOB in params else None


def _task_matches(config: Mapping[str, Any], name: str, knobs: Mapping[str, Any], batch_size: int | None) -> bool:
    if config["task"] != name or (batch_size is not None and config["batch_size"] != batch_size):
        return False
    return json.loads(json.dumps(knobs_of(config))) == knobs  # tuples as lists; 1 == 1.0
