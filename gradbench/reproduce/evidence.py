"""The stored runs of one reproduction, as its claims and figure read them.

``Evidence`` knows the reproduction's cells (the suite at the size that ran) and sees only
their runs, so other runs in the same database never enter a claim. Runs are selected as
``gradbench report --where`` selects them (``evidence.runs(task="mnist1d_cnn",
optimizer="adam")``: values as text or numbers, a task in any spelling ``run`` accepts), and
the selection is checked against the cells: a claim that needs a cell the store lacks (not run
yet, failed, or being run elsewhere) is ``MissingRuns``, never a mean over fewer runs. A claim
that names an axis no cell has is a bug in the claim: ``ValueError``. Torch-free: it reads the
store only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gradbench.grid.cell import Cell
from gradbench.grid.labels import varying_labels
from gradbench.report.pivot import select_runs
from gradbench.store.database import Store

__all__ = ["Evidence", "MissingRuns", "Run", "metric", "open_evidence"]

Run = Mapping[str, Any]  # a stored run row: key, status, config (JSON), the final metrics, ...


class MissingRuns(LookupError):
    """The runs a claim needs are not (all) stored, or failed; the message says which."""


def _where(selection: Mapping[str, Any]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for name, value in selection.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        where[name] = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    return where


def _described(selection: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in selection.items()) or "any run"


def _seeds_text(seeds: Sequence[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, sorted(seeds)))


def _listed(labels: Sequence[str], most: int = 4) -> str:
    shown = "; ".join(labels[:most])
    return shown + (f"; and {len(labels) - most} more" if len(labels) > most else "")


class Evidence:
    """Read access to the stored runs of ``cells`` in an open ``store``.

    Args:
        store: The results database, open (read-only is enough).
        cells: The reproduction's cells, at the size that ran (with its device and threads).
    """

    def __init__(self, store: Store, cells: Sequence[Cell]) -> None:
        self.store = store
        self.cells = list(dict((cell.key, cell) for cell in cells).values())
        # The cells as run rows that are not stored yet, so that a selection is matched against
        # what the suite asks for, whatever the store holds.
        self._planned = [{"key": cell.key, "config": json.dumps(cell.config()), "task": cell.task_label, "status": "planned"} for cell in self.cells]
        self._stored = {run["key"]: run for run in store.runs([cell.key for cell in self.cells])}
        self._seed_of = {cell.key: cell.seed for cell in self.cells}

    @classmethod
    def of_cells(cls, store: Store, cells: Sequence[Cell]) -> Evidence:
        return cls(store, cells)

    @property
    def all_runs(self) -> list[Run]:
        """Every stored run of the cells (any status), in the cells' order."""
        return [self._stored[cell.key] for cell in self.cells if cell.key in self._stored]

    def _expected(self, selection: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The cells matching ``selection`` (as planned rows).

        Raises:
            ValueError: for an axis no cell has, or a malformed task: the claim's own bug.
        """
        return list(select_runs(self._planned, _where(selection)))

    def seeds(self, **selection: Any) -> list[int]:
        """The seeds the suite runs for ``selection``."""
        return sorted({self._seed_of[row["key"]] for row in self._expected(selection)})

    def runs(self, **selection: Any) -> list[Run]:
        """The stored runs (any status) of the cells matching every ``axis=value`` of
        ``selection``; a cell not stored is left out (``require`` says so instead)."""
        return [self._stored[row["key"]] for row in self._expected(selection) if row["key"] in self._stored]

    def require(self, **selection: Any) -> list[Run]:
        """The runs of every cell matching ``selection``, each stored and not failed.

        Raises:
            MissingRuns: naming the seeds of the cells not stored, or stored as failed.
        """
        expected = self._expected(selection)
        if not expected:
            raise MissingRuns(f"the suite has no run of {_described(selection)} at this size")
        # Each cell named by what tells it apart from the others of the selection (a seed, a rate).
        names = dict(zip((row["key"] for row in expected), varying_labels([json.loads(row["config"]) for row in expected])))
        absent = [names[row["key"]] for row in expected if row["key"] not in self._stored]
        failed = [names[row["key"]] for row in expected if row["key"] in self._stored and self._stored[row["key"]]["status"] == "failed"]
        problems = []
        if absent:
            problems.append(f"{len(absent)} of {len(expected)} runs not stored ({_listed(absent)})")
        if failed:
            problems.append(f"{len(failed)} failed ({_listed(failed)}; --retry-failed runs them again)")
        if problems:
            raise MissingRuns(f"{_described(selection)}: " + "; ".join(problems))
        return [self._stored[row["key"]] for row in expected]

    def runs_by_seed(self, **selection: Any) -> dict[int, Run]:
        """``require(**selection)``, one run per seed.

        Raises:
            MissingRuns: as ``require``.
            ValueError: if the selection matches several cells of one seed (it is ambiguous: the
                claim's own bug).
        """
        by_seed: dict[int, Run] = {}
        for run in self.require(**selection):
            seed = self._seed_of[run["key"]]
            if seed in by_seed:
                raise ValueError(f"{_described(selection)} matches several runs of seed {seed}: the claim's selection is ambiguous")
            by_seed[seed] = run
        return dict(sorted(by_seed.items()))

    def per_seed(self, value: Callable[[Run], float], *, allow_diverged: bool = False, **selection: Any) -> list[float]:
        """``value(run)`` for each seed of ``selection``, in seed order.

        A diverged run counts as ``nan`` (against the claim: a run that learnt and then blew up
        has not "trained"), unless ``allow_diverged``, for a claim about divergence itself; its
        final metrics are then those before it diverged, or ``None``: ``value`` decides.

        Raises:
            MissingRuns: if a cell of the selection is not stored, or failed.
        """
        return [self._value(value, run, allow_diverged) for run in self.runs_by_seed(**selection).values()]

    def paired(self, value: Callable[[Run, Run], float], first: Mapping[str, Any], second: Mapping[str, Any], *, allow_diverged: bool = False) -> list[float]:
        """``value(a, b)`` for the runs of ``first`` and ``second`` of each seed (a difference or
        a ratio between two configurations, seed by seed); diverged runs as in ``per_seed``.

        Raises:
            MissingRuns: if a cell of either side is not stored, or failed, or the two sides
                run different seeds.
        """
        a, b = self.runs_by_seed(**first), self.runs_by_seed(**second)
        if set(a) != set(b):
            raise MissingRuns(f"{_described(first)} runs {_seeds_text(list(a))} but {_described(second)} runs {_seeds_text(list(b))}: nothing to pair")
        values = []
        for seed in a:
            diverged = a[seed]["status"] == "diverged" or b[seed]["status"] == "diverged"
            values.append(math.nan if diverged and not allow_diverged else float(value(a[seed], b[seed])))
        return values

    @staticmethod
    def _value(value: Callable[[Run], float], run: Run, allow_diverged: bool) -> float:
        if run["status"] == "diverged" and not allow_diverged:
            return math.nan
        return float(value(run))

    # Reading one run's records (store rows, as `gradbench export` writes them).

    @staticmethod
    def config(run: Run) -> dict[str, Any]:
        config = run["config"]
        return dict(json.loads(config) if isinstance(config, str) else config)

    def evaluations(self, run: Run) -> list[dict[str, Any]]:
        """Test (and train) metrics at each evaluation: step, train_loss, test_loss, test_accuracy, train_time_s, ..."""
        return self.store.evaluations(run["key"])

    def steps(self, run: Run) -> list[dict[str, Any]]:
        """The loss of every step, its wall and CPU time (and the loss scaler's records)."""
        return self.store.curve(run["key"])

    def layers(self, run: Run) -> list[dict[str, Any]]:
        """Per-layer records: step, layer, grad_norm, weight_norm, update_ratio, ..."""
        return list(self.store.layer_rows([run["key"]]))

    def activations(self, run: Run) -> list[dict[str, Any]]:
        """Per-activation-site statistics at each detailed step: mean, std, dead, saturated, ..."""
        return list(self.store.activation_rows([run["key"]]))

    def jacobians(self, run: Run) -> list[dict[str, Any]]:
        """Singular values of the layer-to-layer Jacobians (``--jacobian-every``)."""
        return list(self.store.jacobian_rows([run["key"]]))


def metric(name: str, scale: float = 1.0) -> Callable[[Run], float]:
    """A run's final metric ``name`` (``final_test_accuracy``, ``final_train_loss``, ...) times
    ``scale``; ``nan`` where the run has none."""

    def value(run: Run) -> float:
        stored = run.get(name)
        return math.nan if stored is None else float(stored) * scale

    return value


def open_evidence(db: Path, cells: Sequence[Cell]) -> tuple[Store, Evidence]:
    """The store at ``db`` opened read-only and the evidence of ``cells`` in it."""
    store = Store.open(db, readonly=True)
    return store, Evidence.of_cells(store, cells)
