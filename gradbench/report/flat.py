"""The comparison table, from the store alone: one row per configuration, seeds aggregated.

Rows group runs that differ only in their seed. Numbers are mean +- standard deviation over the
runs that finished (``done``); diverged and failed runs are counted in the ``runs`` column and
never averaged in. Columns whose value is the same in every row are listed once above the
table instead. Given each run's gradient-health verdicts (``gradbench.monitor.diagnosis``), the table
ends with a ``verdict`` column: the verdicts of the row's done and diverged runs, each with its
count where not all of them share it (``healthy 1/2, diverged 1/2``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradbench.axes.precision import DEFAULT_PRECISION
from gradbench.axes.schedules import CONSTANT
from gradbench.grid.labels import optimizer_label

__all__ = ["TEXT_COLUMNS", "Table", "build_table", "render", "FORMATS", "cell_texts", "config_text", "constants_text", "verdict_text", "bytes_text", "COMPILED_NOTE"]

FORMATS = ("md", "csv")
# Configuration columns, in display order; seed is what rows aggregate over.
_CONFIG = (
    "task", "optimizer", "lr", "schedule", "activation", "init", "clip", "batch_size", "steps", "device", "precision", "compile", "threads", "eval_every",
    "record_every", "detail_every", "validation", "jacobian_every",
)
# Shown in the line of constants only when a run set them (the defaults say nothing new).
QUIET_DEFAULTS = {"validation": 0, "schedule": CONSTANT, "jacobian_every": 0, "precision": DEFAULT_PRECISION, "compile": False}
# Under the table when some row trained compiled: why it has no dead-unit or saturation verdicts.
COMPILED_NOTE = "compiled runs (compile True) record no activation statistics (torch.compile does not follow the monitor's forward hooks): no dead_units or saturated verdicts for them"
_ALWAYS_SHOWN = ("optimizer", "activation", "clip")
# Columns of words, left-aligned (the rest are numbers, right-aligned).
TEXT_COLUMNS = ("task", "optimizer", "schedule", "activation", "init", "clip", "device", "runs", "verdict")
# (column, run field, how to aggregate)
_METRICS = (
    ("final train loss", "final_train_loss", "mean"),
    ("test acc %", "final_test_accuracy", "percent"),
    ("test loss", "final_test_loss", "mean"),
    ("steps to target", "steps_to_target", "reached"),
    # Wall time (CUDA-event time on a GPU) and, for CPU runs, the CPU time other processes do not inflate.
    ("wall step ms", "median_step_time_s", "milliseconds"),
    ("cpu step ms", "median_step_cpu_s", "milliseconds"),
    ("grad first/last", "grad_ratio_first_last", "geometric"),
    # What the optimizer costs in memory: its state tensors, and on CUDA the run's peak allocation.
    ("opt state", "optimizer_state_bytes", "bytes"),
    ("peak cuda mem", "peak_memory_bytes", "bytes"),
)
# Shown only where they differ between rows: one optimizer on one model always costs the same.
_WHERE_THEY_VARY = ("optimizer_state_bytes", "peak_memory_bytes")


@dataclass
class Table:
    """An aggregated table: ``columns`` shown, ``rows`` of raw values, ``constants`` shared by all."""

    columns: list[str]
    rows: list[dict[str, Any]]
    constants: dict[str, Any]


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _geometric(values: Sequence[float]) -> tuple[float | None, float | None]:
    logs = [math.log10(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not logs:
        return None, None
    mean, std = statistics.fmean(logs), (statistics.stdev(logs) if len(logs) > 1 else 0.0)
    return 10**mean, std  # std in decades


def _display(run: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    shown = {column: run.get(column) for column in _CONFIG}
    shown["optimizer"] = optimizer_label(config)
    shown["eval_every"], shown["record_every"] = config["eval_every"], config["record_every"]
    shown["detail_every"] = config.get("detail_every", 0)  # runs stored before details existed
    shown["validation"] = config.get("validation") or None  # shown only for runs that held one out
    shown["schedule"] = config.get("schedule", QUIET_DEFAULTS["schedule"])  # stored before schedules existed: constant
    shown["jacobian_every"] = config.get("jacobian_every", QUIET_DEFAULTS["jacobian_every"])
    shown["precision"] = config.get("precision", DEFAULT_PRECISION)  # stored before precisions existed: fp32
    shown["compile"] = config.get("compile", False)
    return shown


def verdict_text(members: Sequence[Mapping[str, Any]], verdicts: Mapping[str, Sequence[str]]) -> str:
    """The verdicts of the done and diverged runs among ``members``, each with its count where
    not all of them share it (``healthy 1/2, diverged 1/2``); ``-`` for none."""
    judged = [verdicts[m["key"]] for m in members if m["status"] != "failed" and m["key"] in verdicts]
    counts: dict[str, int] = {}
    for names in judged:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return ", ".join(name if count == len(judged) else f"{name} {count}/{len(judged)}" for name, count in counts.items()) or "-"


def build_table(runs: Sequence[Mapping[str, Any]], verdicts: Mapping[str, Sequence[str]] | None = None) -> Table:
    """Aggregate run rows (``Store.runs()``) over seeds: runs whose full configuration is the
    same but for the seed form one row.

    Args:
        runs: The run rows.
        verdicts: Each run's verdict names by key (``None``: no verdict column).
    """
    groups: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = {}
    for run in runs:
        config = json.loads(run["config"])
        group = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
        groups.setdefault(group, []).append((run, config))
    rows = []
    for pairs in groups.values():
        members = [run for run, _ in pairs]
        row: dict[str, Any] = _display(*pairs[0])
        done = [m for m in members if m["status"] == "done"]
        diverged = [m for m in members if m["status"] == "diverged"]
        row["seeds"] = len(members)
        row["done"], row["diverged"], row["failed"] = len(done), len(diverged), len(members) - len(done) - len(diverged)
        row["diverged_steps"] = sorted(m["nonfinite_step"] for m in diverged if m["nonfinite_step"] is not None)
        row["errors"] = sorted({m["error"] for m in members if m["status"] == "failed" and m["error"]})
        if verdicts is not None:
            row["verdict"] = verdict_text(members, verdicts)
        row["metric"] = members[0]["metric"]
        row["target"] = members[0]["target"]
        for _, field, how in _METRICS:
            values = [m[field] for m in done]
            if how == "geometric":
                row[field] = _geometric(values)
            elif how == "reached":
                reached = [v for v in values if v is not None]
                row[field] = (*_mean_std(reached), len(reached))
            else:
                row[field] = _mean_std(values)
        rows.append(row)
    shown = [c for c in _CONFIG if c in _ALWAYS_SHOWN or len({r[c] for r in rows}) > 1]
    constants = {c: rows[0][c] for c in _CONFIG if c not in shown} if rows else {}
    metrics = [
        title
        for title, field, _ in _METRICS
        if (field not in _WHERE_THEY_VARY and any(r[field][0] is not None for r in rows))
        or (field in _WHERE_THEY_VARY and len({r[field][0] for r in rows if r[field][0] is not None}) > 1)
        or (field == "final_test_accuracy" and any(r["metric"] == "accuracy" for r in rows))
        or (field == "steps_to_target" and any(r["target"] is not None for r in rows))
    ]
    return Table(columns=[*shown, "runs", *metrics, *(["verdict"] if verdicts is not None else [])], rows=rows, constants=constants)


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def bytes_text(value: float) -> str:
    """A size in binary units, three significant digits: ``0 B``, ``512 B``, ``41.3 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cell_text(row: dict[str, Any], title: str) -> str:
    field, how = next((f, h) for t, f, h in _METRICS if t == title)
    if row["done"] == 0:
        return "diverged" if row["diverged"] else "failed"
    value = row[field]
    if how == "reached":
        mean, std, reached = value
        if reached == 0:
            return "not reached"
        text = f"{mean:.0f}" + (f" +- {std:.0f}" if reached > 1 else "")
        return text if reached == row["done"] else f"{text} ({reached}/{row['done']})"
    mean, std = value
    if mean is None:
        return "-"
    if how == "percent":
        return f"{100 * mean:.1f}" + (f" +- {100 * std:.1f}" if row["done"] > 1 else "")
    if how == "milliseconds":
        return _number(1000 * mean) + (f" +- {_number(1000 * std, 2)}" if row["done"] > 1 else "")
    if how == "geometric":
        return f"{mean:.1e}" + (f" x/ 10^{std:.1f}" if row["done"] > 1 else "")
    if how == "bytes":  # the same for every seed as a rule: the spread only where there is one
        return bytes_text(mean) + (f" +- {bytes_text(std)}" if std else "")
    return _number(mean) + (f" +- {_number(std, 2)}" if row["done"] > 1 else "")


def _runs_text(row: dict[str, Any]) -> str:
    parts = [f"{row['done']}/{row['seeds']} done"]
    if row["diverged"]:
        steps = ",".join(str(s) for s in row["diverged_steps"])
        parts.append(f"{row['diverged']} diverged" + (f" @{steps}" if steps else ""))
    if row["failed"]:
        parts.append(f"{row['failed']} failed")
    return ", ".join(parts)


def config_text(value: Any) -> str:
    """A configuration value as tables print it: ``-`` for none, floats in short form."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def constants_text(table: Table) -> str:
    """The values every row shares, as one line."""
    return "; ".join(f"{k} {config_text(v)}" for k, v in table.constants.items() if v is not None and QUIET_DEFAULTS.get(k) != v)


def cell_texts(table: Table) -> list[list[str]]:
    """Each row's cells as text, in ``table.columns`` order (the HTML report reuses them)."""
    body = []
    for row in table.rows:
        cells = []
        for column in table.columns:
            if column == "runs":
                cells.append(_runs_text(row))
            elif column == "verdict":
                cells.append(row["verdict"])
            elif column in _CONFIG:
                cells.append(config_text(row[column]))
            else:
                cells.append(_cell_text(row, column))
        body.append(cells)
    return body


def _markdown(table: Table) -> str:
    lines = []
    if table.constants:
        lines.append(constants_text(table))
        lines.append("")
    header = table.columns
    body = cell_texts(table)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if c in _CONFIG or c in ("runs", "verdict") else "---:" for c in header) + "|")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    failures = [(row, error) for row in table.rows for error in row["errors"]]
    if failures:
        lines.append("\nfailed runs:")
        for row, error in failures:
            identity = " ".join(config_text(row[c]) for c in table.columns if c in _CONFIG)
            lines.append(f"- {identity}: {error}")
    if any(row["compile"] for row in table.rows):
        lines.append(f"\n{COMPILED_NOTE}")
    target = {(r["task"], r["metric"], r["target"]) for r in table.rows if r["target"] is not None}
    for task, metric, value in sorted(target, key=str):
        name = task if task is not None else table.constants.get("task")
        goal = f"test accuracy >= {100 * value:.0f}%" if metric == "accuracy" else f"test loss <= {value:.4g}"
        lines.append(f"\ntarget for {name}: {goal}")
    return "\n".join(lines) + "\n"


# CSV columns whose unit differs from the store's: the name says which.
_CSV_NAMES = {"final_test_accuracy": "test_accuracy_percent"}


def _csv(table: Table) -> str:
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    metric_fields = [field for _, field, _ in _METRICS]
    header = [*_CONFIG, "seeds", "done", "diverged", "failed", "diverged_steps", "errors", "metric", "target"]
    for field in metric_fields:
        name = _CSV_NAMES.get(field, field)
        header += [f"{name}_mean", f"{name}_std"] + (["reached"] if field == "steps_to_target" else [])
    judged = "verdict" in table.columns
    header += ["verdict"] if judged else []
    writer.writerow(header)
    for row in table.rows:
        values = [row[c] for c in _CONFIG] + [row["seeds"], row["done"], row["diverged"], row["failed"]]
        values += [" ".join(map(str, row["diverged_steps"])), " | ".join(row["errors"]), row["metric"], row["target"]]
        for field in metric_fields:
            if field in _CSV_NAMES:  # accuracy in percent, as every output prints it
                values += [None if v is None else 100 * v for v in row[field]]
            else:
                values += list(row[field])
        values += [row["verdict"]] if judged else []
        writer.writerow(["" if v is None else v for v in values])
    return output.getvalue()


def render(runs: Sequence[Mapping[str, Any]], fmt: str = "md", verdicts: Mapping[str, Sequence[str]] | None = None) -> str:
    """The comparison table of ``runs`` in format ``fmt`` (``md`` or ``csv``), with a verdict
    column when ``verdicts`` (verdict names by run key) are given.

    Raises:
        ValueError: for an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose from: {', '.join(FORMATS)}")
    if not runs:
        return "no runs stored yet\n" if fmt == "md" else ""
    table = build_table(runs, verdicts)
    return _markdown(table) if fmt == "md" else _csv(table)
