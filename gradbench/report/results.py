"""The store as pandas DataFrames: ``gradbench.Results("gradbench.db")``.

``runs()`` has one row per run: its key, status and label, every axis of its configuration as
a column of its own (``task``, the task's knobs, ``optimizer``, ``lr``, ``activation``,
``init``, ``clip``, ``seed``, ``steps``, ``batch_size``, the settings; named as the tables name
them, ``gradbench.grid.labels.config_axes``), the final metrics and timings, and the
environment as text. ``evaluations()``, ``steps()``, ``layers()`` and ``activations()`` are
the long-format rows of ``gradbench export``, each with the run's axes joined on, so a curve
can be grouped by ``optimizer`` or ``lr`` at once.

Where a stored column has the name of an axis (a task knob called ``target`` beside the run's
accuracy ``target``; the learning rate at each evaluation beside the run's ``lr``), the stored
column is prefixed: ``run_target``, ``evaluation_lr``. Values are as stored: accuracies as
fractions (0-1), times in seconds. pandas is an optional
dependency (``pip install 'gradbench[pandas]'``), imported on the first call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradbench.grid.labels import config_axes
from gradbench.report.export import export_rows
from gradbench.store.database import Store

__all__ = ["Results"]

# Columns of a run row that the flattened configuration replaces (it holds them, named as axes).
_CONFIG_COLUMNS = ("task_knobs", "optimizer", "hyperparameters", "lr", "activation", "init", "clip", "seed", "steps", "batch_size", "device", "threads", "schedule")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("gradbench.Results needs pandas, which is not installed: pip install 'gradbench[pandas]'") from None
    return pandas


class Results:
    """A results database, read-only, as pandas DataFrames.

    Args:
        path: The database (``gradbench.db``).

    Raises:
        StoreError: if ``path`` is not a gradbench database.
    """

    def __init__(self, path: str | Path = "gradbench.db") -> None:
        self.path = Path(path)
        with Store.open(self.path, readonly=True):  # fail here, not on the first call
            pass

    def _frame(self, columns: list[str], rows: Iterable[dict[str, Any]]) -> Any:
        return _pandas().DataFrame(list(rows), columns=columns)

    def _axes(self, store: Store) -> dict[str, dict[str, Any]]:
        return {run["key"]: config_axes(json.loads(run["config"])) for run in store.runs()}

    def runs(self) -> Any:
        """One row per run: key, status, label, the configuration's axes, the metrics."""
        pandas = _pandas()
        with Store.open(self.path, readonly=True) as store:
            rows = []
            for run in store.runs():
                axes = config_axes(json.loads(run["config"]))
                rest = {(f"run_{k}" if k in axes else k): v for k, v in run.items() if k not in _CONFIG_COLUMNS and k not in ("key", "status", "label")}
                rows.append({"key": run["key"], "status": run["status"], "label": run["label"], **axes, **rest})
        return pandas.DataFrame(rows)

    def _joined(self, what: str) -> Any:
        with Store.open(self.path, readonly=True) as store:
            axes = self._axes(store)
            columns, rows = export_rows(store, what)
            frame = self._frame(columns, rows)
        names = list(dict.fromkeys(n for one in axes.values() for n in one))
        prefix = {"evaluations": "evaluation", "steps": "step", "layers": "layer", "activations": "activation"}[what]
        frame = frame.rename(columns={c: f"{prefix}_{c}" for c in frame.columns if c in names and c != "run_key"})
        table = _pandas().DataFrame([{"run_key": key, **one} for key, one in axes.items()], columns=["run_key", *names])
        return frame.merge(table, on="run_key", how="left")

    def evaluations(self) -> Any:
        """The training curves: one row per run and evaluation (step, training time so far,
        train, test and validation metrics, learning rate), the run's axes joined on."""
        return self._joined("evaluations")

    def steps(self) -> Any:
        """One row per run and step: mini-batch loss, wall and CPU step time, the run's axes."""
        return self._joined("steps")

    def layers(self) -> Any:
        """One row per run, recorded step and layer (``gradbench export --what layers``)."""
        return self._joined("layers")

    def activations(self) -> Any:
        """One row per run, recorded step and activation site (``--what activations``)."""
        return self._joined("activations")
