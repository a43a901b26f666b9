"""Long-format rows out of the store, as CSV, JSON or Parquet, for analysis elsewhere.

Values are as stored: accuracies as fractions (0-1, the tables print them in percent), times
in seconds. Parquet needs pyarrow (``pip install pyarrow``), imported only for it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from gradbench.store.database import ACTIVATION_STATISTICS, LAYER_STATISTICS, Store

__all__ = ["EXPORTS", "EXPORT_FORMATS", "export", "export_rows", "write_parquet", "require_pyarrow"]

EXPORTS = ("runs", "evaluations", "steps", "layers", "activations", "jacobians")
EXPORT_FORMATS = ("csv", "json", "parquet")
_JSON_COLUMNS = ("task_knobs", "hyperparameters", "config", "env")


def export_rows(store: Store, what: str) -> tuple[list[str], Iterable[dict[str, Any]]]:
    """The column names and rows of ``what`` (one of ``EXPORTS``)."""
    if what == "runs":
        runs = store.runs()
        columns = list(runs[0]) if runs else []
        return columns, runs
    if what == "evaluations":
        columns = [row[1] for row in store.connection.execute("PRAGMA table_info(evaluations)")]
        return columns, store.evaluation_rows()
    if what == "steps":
        return ["run_key", "step", "loss", "step_time_s", "step_cpu_s", "loss_scale", "skipped"], store.step_rows()
    if what == "layers":
        return ["run_key", "step", "layer_index", "layer_name", "grad_norm", *LAYER_STATISTICS], store.layer_rows()
    if what == "jacobians":
        return ["run_key", "step", "site_index", "site_name", "sv_mean", "sv_min", "sv_max"], store.jacobian_rows()
    columns = ["run_key", "step", "site_index", "site_name", "module", "kind", "units", *ACTIVATION_STATISTICS]
    return columns, store.activation_rows()


def export(store: Store, what: str, fmt: str) -> str:
    """All ``what`` rows as text (``runs``: one per run; ``evaluations``: one per run and
    evaluation, the training curves; ``steps``: one per run and step, the mini-batch loss and
    step times; ``layers``: one per run, recorded step and layer;
    ``activations``: one per run, recorded step and activation site; ``jacobians``: one per run,
    step and activation site where Jacobians were taken).

    Raises:
        ValueError: for an unknown ``what`` or ``fmt``.
    """
    if what not in EXPORTS:
        raise ValueError(f"unknown export {what!r}; choose from: {', '.join(EXPORTS)}")
    if fmt not in EXPORT_FORMATS or fmt == "parquet":
        raise ValueError(f"unknown text export format {fmt!r}; choose from: csv, json (parquet: write_parquet)")
    columns, rows = export_rows(store, what)
    if fmt == "json":
        decoded = [{k: (json.loads(v) if k in _JSON_COLUMNS and v else v) for k, v in row.items()} for row in rows]
        return json.dumps(decoded, indent=1) + "\n"
    output = io.StringIO()
    writer = csv.DictWriter(output, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return output.getvalue()


def require_pyarrow() -> None:
    """Raises ValueError, one line naming the package, where pyarrow is not installed."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise ValueError("--format parquet needs pyarrow, which is not installed: pip install pyarrow (or choose --format csv or json)")


def write_parquet(store: Store, what: str, path: str) -> None:
    """All ``what`` rows to a Parquet file at ``path`` (JSON columns as text).

    Raises:
        ValueError: for an unknown ``what``, or without pyarrow.
    """
    if what not in EXPORTS:
        raise ValueError(f"unknown export {what!r}; choose from: {', '.join(EXPORTS)}")
    require_pyarrow()
    import pyarrow
    import pyarrow.parquet

    columns, rows = export_rows(store, what)
    data = list(rows)
    table = pyarrow.table({name: [row.get(name) for row in data] for name in columns})
    pyarrow.parquet.write_table(table, path)
