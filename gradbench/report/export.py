"""Long-format rows out of the store, as CSV or JSON, for analysis elsewhere."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from gradbench.store.database import ACTIVATION_STATISTICS, LAYER_STATISTICS, Store

__all__ = ["EXPORTS", "EXPORT_FORMATS", "export"]

EXPORTS = ("runs", "layers", "activations", "jacobians")
EXPORT_FORMATS = ("csv", "json")
_JSON_COLUMNS = ("task_knobs", "hyperparameters", "config", "env")


def _rows(store: Store, what: str) -> tuple[list[str], Iterable[dict[str, Any]]]:
    if what == "runs":
        runs = store.runs()
        columns = list(runs[0]) if runs else []
        return columns, runs
    if what == "layers":
        return ["run_key", "step", "layer_index", "layer_name", "grad_norm", *LAYER_STATISTICS], store.layer_rows()
    if what == "jacobians":
        return ["run_key", "step", "site_index", "site_name", "sv_mean", "sv_min", "sv_max"], store.jacobian_rows()
    columns = ["run_key", "step", "site_index", "site_name", "module", "kind", "units", *ACTIVATION_STATISTICS]
    return columns, store.activation_rows()


def export(store: Store, what: str, fmt: str) -> str:
    """All ``what`` rows (``runs``: one per run; ``layers``: one per run, recorded step and layer;
    ``activations``: one per run, recorded step and activation site; ``jacobians``: one per run,
    step and activation site where Jacobians were taken).

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
