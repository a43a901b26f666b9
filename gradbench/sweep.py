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

__all__ = ["SweepSummary", "run_sweep", "STEP_BAR_MIN_STEPS"]

# Cells with at least this many steps get a progress bar of their own.
STEP_BAR_MIN_STEPS = 2000


@dataclass
class SweepSummary:
    """What a sweep did: cells skipped (already stored) and the statuses of those it ran."""

    total: int
    skipped: int
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
    data_options: DataOptions | None = None,
) -> SweepSummary:
    """Run every cell not yet in ``store``; commit each result in one transaction as it arrives.

    Args:
        cells: The expanded suite.
        store: Where results go; its finished keys are skipped.
        executor: How cells run (default: serially, in this process).
        progress: Show tqdm bars; ``None`` shows them only on a terminal.
        data_options: Where real datasets live (default: ``$GRADBENCH_DATA`` or its default).
    """
    executor = executor or SerialExecutor()
    finished = store.finished_keys()
    todo = [cell for cell in cells if cell.key not in finished]
    summary = SweepSummary(total=len(cells), skipped=len(cells) - len(todo))
    disable = None if progress is None else not progress
    with tqdm(total=len(cells), initial=summary.skipped, desc="cells", unit="cell", disable=disable) as bar:

        def run(cell: Cell) -> RunResult:
            bar.set_postfix_str(cell.label, refresh=True)
            if cell.steps < STEP_BAR_MIN_STEPS:
                return run_cell(cell, data_options=data_options)
            with tqdm(total=cell.steps, desc="steps", unit="step", leave=False, disable=disable) as steps:
                return run_cell(cell, data_options=data_options, on_steps=steps.update)

        for result in executor.map(run, todo):
            store.save(result)
            summary.statuses[result.status] += 1
            bar.update(1)
            counts = ", ".join(f"{status} {count}" for status, count in sorted(summary.statuses.items()))
            bar.set_postfix_str(counts)
    return summary
