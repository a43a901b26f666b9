"""A sweep: skip the cells already stored, run the rest, store each result as it arrives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from gradbench.executors import Executor, SerialExecutor
from gradbench.grid import Cell
from gradbench.image_data import DataOptions
from gradbench.store import Store
from gradbench.train import RunResult, run_cell

__all__ = ["SweepSummary", "run_sweep"]


@dataclass
class SweepSummary:
    """What a sweep did: cells skipped (already stored) and the statuses of those it ran."""

    total: int
    skipped: int
    skipped_failed: int = 0
    statuses: Counter = field(default_factory=Counter)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())


def run_sweep(
    cells: Sequence[Cell],
    store: Store,
    *,
    executor: Executor | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    data_options: DataOptions | None = None,
) -> SweepSummary:
    """Run every cell not yet in ``store``; commit each result in one transaction as it arrives.

    Args:
        cells: The expanded suite.
        store: Where results go; its finished keys are skipped.
        executor: How cells run (default: serially, in this process).
        progress: Show tqdm bars; ``None`` shows them only on a terminal.
        retry_failed: Run again the cells stored as ``failed`` (their new result replaces the
            old one); diverged and done cells are always kept.
        data_options: Where real datasets live (default: ``$GRADBENCH_DATA`` or its default).
    """
    executor = executor or SerialExecutor()
    statuses = store.statuses()
    skip = {key for key, status in statuses.items() if status != "failed" or not retry_failed}
    todo = [cell for cell in cells if cell.key not in skip]
    skipped_failed = sum(1 for cell in cells if statuses.get(cell.key) == "failed" and cell.key in skip)
    summary = SweepSummary(total=len(cells), skipped=len(cells) - len(todo), skipped_failed=skipped_failed)
    disable = None if progress is None else not progress
    with tqdm(total=len(cells), initial=summary.skipped, desc="cells", unit="cell", disable=disable) as bar:

        def run(cell: Cell) -> RunResult:
            bar.set_postfix_str(cell.label, refresh=True)
            with tqdm(total=cell.steps, desc="steps", unit="step", leave=False, disable=disable) as steps:
                return run_cell(cell, data_options=data_options, on_steps=steps.update)

        for result in executor.map(run, todo):
            store.save(result)
            summary.statuses[result.status] += 1
            bar.update(1)
            counts = ", ".join(f"{status} {count}" for status, count in sorted(summary.statuses.items()))
            bar.set_postfix_str(counts)
    return summary
