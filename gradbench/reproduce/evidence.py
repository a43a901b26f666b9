"""The stored runs of one reproduction, as its claims and figure read them.

``Evidence`` sees only the runs of the reproduction's own cells (the suite at the size that
ran), so other runs in the same database never enter a claim. Runs are selected as
``gradbench report --where`` selects them (``evidence.runs(task="mnist1d_cnn",
optimizer="adam")``: values as text or numbers, a task in any spelling ``run`` accepts), and a
claim's value per seed comes from ``per_seed``. Torch-free: it reads the store only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gradbench.report.pivot import select_runs
from gradbench.store.database import Store

__all__ = ["Evidence", "MissingRuns", "Run"]

Run = Mapping[str, Any]  # a stored run row: key, status, config (JSON), the final metrics, ...


class MissingRuns(LookupError):
    """The runs a claim needs are not (all) stored; the message says which."""


def _where(selection: Mapping[str, Any]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for name, value in selection.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        where[name] = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    return where


def _described(selection: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in selection.items()) or "any run"


class Evidence:
    """Read access to the runs of ``keys`` in an open ``store``.

    Args:
        store: The results database, open (read-only is enough).
        keys: The reproduction's cells' keys; runs outside them are not seen.
        expected_seeds: The seeds the suite asks for: ``per_seed`` reports a seed without a
            stored run as missing rather than silently averaging fewer.
    """

    def __init__(self, store: Store, keys: Iterable[str], expected_seeds: Sequence[int] = ()) -> None:
        self.store = store
        self.keys = list(dict.fromkeys(keys))
        self.expected_seeds = tuple(expected_seeds)
        self._runs = store.runs(self.keys)

    @classmethod
    def of_cells(cls, store: Store, cells: Sequence[Any]) -> Evidence:
        return cls(store, [cell.key for cell in cells], sorted({cell.seed for cell in cells}))

    @property
    def all_runs(self) -> list[Run]:
        return list(self._runs)

    def runs(self, **selection: Any) -> list[Run]:
        """The stored runs (any status) matching every ``axis=value`` of ``selection``."""
        if not self._runs:
            return []
        try:
            return list(select_runs(self._runs, _where(selection)))
        except ValueError:  # an axis no stored run has: none matches
            return []

    def per_seed(self, value: Callable[[Run], float], *, allow_failed: bool = False, **selection: Any) -> list[float]:
        """``value(run)`` for each seed of the runs matching ``selection``, in seed order.

        A diverged run is passed to ``value`` like a finished one (its final metrics are those
        at divergence, or ``None``: ``value`` decides); a failed one is missing unless
        ``allow_failed``.

        Raises:
            MissingRuns: if no run matches, a seed the suite asks for has none, or one seed
                matches several runs (the selection is ambiguous).
        """
        runs = [run for run in self.runs(**selection) if allow_failed or run["status"] != "failed"]
        by_seed: dict[int, list[Run]] = {}
        for run in runs:
            by_seed.setdefault(self.config(run)["seed"], []).append(run)
        if not by_seed:
            raise MissingRuns(f"no stored run of {_described(selection)}")
        absent = [seed for seed in self.expected_seeds if seed not in by_seed]
        if absent:
            raise MissingRuns(f"{_described(selection)}: no stored run for seed {', '.join(map(str, absent))}")
        ambiguous = [seed for seed, found in by_seed.items() if len(found) > 1]
        if ambiguous:
            raise MissingRuns(f"{_described(selection)} matches {len(by_seed[ambiguous[0]])} runs of seed {ambiguous[0]}: the claim's selection is ambiguous")
        return [float(value(by_seed[seed][0])) for seed in sorted(by_seed)]

    def paired(self, value: Callable[[Run, Run], float], first: Mapping[str, Any], second: Mapping[str, Any]) -> list[float]:
        """``value(a, b)`` for the runs of ``first`` and ``second`` of each seed (a difference or
        a ratio between two configurations, seed by seed)."""
        a = {self.config(run)["seed"]: run for run in self._one_per_seed(first)}
        b = {self.config(run)["seed"]: run for run in self._one_per_seed(second)}
        common = sorted(set(a) & set(b))
        if not common:
            raise MissingRuns(f"no seed has stored runs of both {_described(first)} and {_described(second)}")
        return [float(value(a[seed], b[seed])) for seed in common]

    def _one_per_seed(self, selection: Mapping[str, Any]) -> list[Run]:
        found: list[Run] = []

        def keep(run: Run) -> float:
            found.append(run)
            return 0.0

        self.per_seed(keep, **selection)
        return found

    # Reading one run's records (store rows, as `gradbench export` writes them).

    @staticmethod
    def config(run: Run) -> dict[str, Any]:
        config = run["config"]
        return dict(json.loads(config) if isinstance(config, str) else config)

    def evaluations(self, run: Run) -> list[dict[str, Any]]:
        """Test (and train) metrics at each evaluation: step, train_loss, test_loss, test_accuracy, ..."""
        return self.store.evaluations(run["key"])

    def steps(self, run: Run) -> list[dict[str, Any]]:
        """The loss of every step (and the loss scaler's records)."""
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
    """A run's final metric ``name`` (``final_test_accuracy``, ``final_train_loss``, ...) times ``scale``;
    ``nan`` where the run has none (it diverged before any evaluation)."""

    def value(run: Run) -> float:
        stored = run.get(name)
        return math.nan if stored is None else float(stored) * scale

    return value


def open_evidence(db: Path, cells: Sequence[Any]) -> tuple[Store, Evidence]:
    """The store at ``db`` opened read-only and the evidence of ``cells`` in it."""
    store = Store.open(db, readonly=True)
    return store, Evidence.of_cells(store, cells)
