"""A sweep: skip the cells already stored, claim and run the rest on an executor, store each
result as it arrives.

The driver (this code, in one process) is the store's only writer for its sweep: executors
return results and the driver commits each in one transaction, deleting the cell's claim in
the same transaction. Cells are claimed one at a time, as the executor has a free slot for
them, so two sweeps on one store share the work instead of both running it; a sweep killed at
any moment leaves stale claims that the next sweep takes over (``gradbench.store.claims``).
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tqdm.auto import tqdm

from gradbench.grid.cell import Cell
from gradbench.run.context import RunContext
from gradbench.run.result import RunResult
from gradbench.store.claims import Claimant, Heartbeat
from gradbench.store.database import Store
from gradbench.sweep.executor import CellJob, Executor, SerialExecutor

__all__ = ["SweepSummary", "run_sweep"]


@dataclass
class SweepSummary:
    """What a sweep did: cells skipped (already stored, or stored by another sweep while this
    one ran), the statuses of those it ran, and those another live sweep was running."""

    total: int
    skipped: int
    skipped_failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    running_elsewhere: list[str] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())


def _job_from(deprecated: dict[str, Any]) -> CellJob:
    """The default ``RunContext``, or one made of 0.1's keywords."""
    unknown = sorted(set(deprecated) - {"data_options", "plugins"})
    if unknown:
        raise TypeError(f"run_sweep() got an unexpected keyword argument {unknown[0]!r}")
    if deprecated:
        warnings.warn("run_sweep(data_options=..., plugins=...) is deprecated: pass job=RunContext(data_options=..., plugins=...)", DeprecationWarning, stacklevel=3)
    return RunContext(data_options=deprecated.get("data_options"), plugins=tuple(deprecated.get("plugins") or ()))


def run_sweep(
    cells: Sequence[Cell],
    store: Store,
    *,
    executor: Executor | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    job: CellJob | None = None,
    on_result: Callable[[RunResult], Any] | None = None,
    command: str | None = None,
    **deprecated: Any,
) -> SweepSummary:
    """Run every cell not yet in ``store``; commit each result in one transaction as it arrives.

    Args:
        cells: The expanded suite.
        store: Where results go (opened for writing); its finished keys are skipped.
        executor: Where cells run (default: serially, in this process). The caller closes it.
        progress: Show the progress bar; ``None`` shows it only on a terminal.
        retry_failed: Run again the cells stored as ``failed`` (their new result replaces the
            old one); diverged and done cells are always kept.
        job: What runs each cell (default: ``RunContext()``, no plugins and the default data
            directory); pass ``RunContext(plugins=..., data_options=...)`` for others. The
            executor hands it to its workers without looking inside.
        on_result: Called in the driver with each result once the store has it (the
            TensorBoard writer of ``gradbench run --tensorboard``). An ``OSError`` it raises
            (a full disk) is a warning line: the run is stored and the sweep goes on.
        command: The command line that started the sweep, stored in each of its runs'
            environment as ``command`` (reports show where their numbers came from).
        deprecated: 0.1's ``data_options=`` and ``plugins=``, made into the ``RunContext``
            (with a ``DeprecationWarning``).
    """
    job = job or _job_from(deprecated)
    executor = executor or SerialExecutor()
    started = datetime.now(timezone.utc)
    statuses = store.statuses()
    skip = {key for key, status in statuses.items() if status != "failed" or not retry_failed}
    todo = [cell for cell in cells if cell.key not in skip]
    skipped_failed = sum(1 for cell in cells if statuses.get(cell.key) == "failed" and cell.key in skip)
    summary = SweepSummary(total=len(cells), skipped=len(cells) - len(todo), skipped_failed=skipped_failed)
    executor.check(todo)
    claimant = Claimant.current()
    running = 0
    disable = None if progress is None else not progress
    with tqdm(total=len(cells), initial=summary.skipped, desc="cells", unit="cell", disable=disable, dynamic_ncols=True) as bar:

        def show() -> None:
            counts = {"done": 0, "running": running, "diverged": 0, "failed": 0, **summary.statuses}
            if summary.running_elsewhere:
                counts["elsewhere"] = len(summary.running_elsewhere)
            bar.set_postfix_str(", ".join(f"{name} {count}" for name, count in counts.items()), refresh=True)

        def claimed() -> Iterator[Cell]:
            """The cells to run, each claimed just before the executor takes it."""
            nonlocal running
            for cell in todo:
                outcome = store.claim(cell.key, claimant, retry_failed_before=started if retry_failed else None)
                if outcome == "stored":  # another sweep finished it meanwhile
                    summary.skipped += 1
                    bar.update(1)
                elif outcome == "running":  # another live sweep has it
                    summary.running_elsewhere.append(cell.key)
                else:
                    running += 1
                    show()
                    yield cell

        show()
        results = executor.map(job, claimed())
        with Heartbeat(store.path, claimant):
            try:
                for result in results:
                    if command is not None:
                        result.env["command"] = command
                    store.save(result)
                    if on_result is not None:  # after the store: a result is never lost to it
                        try:
                            on_result(result)
                        except OSError as error:  # a full disk under the event files: the run is stored, the sweep goes on
                            bar.write(f"gradbench: warning: cell {result.cell.key}: stored, but on_result failed: {error}", file=sys.stderr)
                    running -= 1
                    summary.statuses[result.status] += 1
                    bar.update(1)
                    show()
            finally:
                if hasattr(results, "close"):
                    results.close()  # stop the workers first (Ctrl-C, an error), whatever holds the traceback
                store.release(claimant)  # then drop the claims of cells not stored
    return summary
