"""Long-format rows out of the store, as CSV or JSON, for analysis elsewhere."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from gradbench.store import Store

__all__ = ["EXPORTS", "EXPORT_FORMATS", "export"]

EXPORTS = ("runs", "layers")
EXPORT_FORMATS = ("csv", "json")
_JSON_COLUMNS = ("task_knobs", "hyperparameters", "config", "env")


def _rows(store: Store, what: str) -> tuple[list[str], Iterable[dict[str, Any]]]:
    if what == "runs":
        runs = store.runs()
        columns = list(runs[0]) if runs else []
        return columns, runs
    columns = ["run_key", "step", "layer_index", "layer_name", "grad_norm"]
    return columns, store.layer_rows()


def export(store: Store, what: str, fmt: str) -> str:
    """All ``what`` rows (``runs``: one per run; ``layers``: one per run, step and layer).

    Raises:
        ValueError: for an unknown ``what`` or ``fmt``.
    """
    if what not in EXPORTS:
        raise ValueError(f"unknown export {what!r}; choose from: {', '.join(EXPORTS)}")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from: {', '.join(EXPORT_FORMATS)}")
    columns, rows = _rows(store, what)
    if fmt == "json":
        decoded = [{k: (json.loads(v) if k in _JSON_COLUMNS and v else v) for k, v in row.items()} for row in rows]
        return json.dumps(decoded, indent=1) + "\n"
    output = io.StringIO()
    writer = csv.DictWriter(output, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return output.getvalue()
