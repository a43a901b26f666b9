"""Executors: where cells run. Each cell is independent, so any executor may run them in any
order and on any worker; results come back to the driver, which alone writes the store.

An executor has three parts:
    check(cells)     before the store is opened: can these cells run here? (``ExecutorError``,
                     one line, otherwise; nothing has been written yet)
    map(job, cells)  pulls a cell from the ``cells`` iterator only when it has a free slot (the
                     sweep claims each cell as it is pulled), yields each result when ready
    close()          stops workers

What a worker runs is a ``CellJob``: a picklable callable from a cell to its result, opaque to
the executor (``gradbench.run.RunContext`` is the one the sweep hands over: the plugins to
import, where datasets live). Executors know nothing about tasks or data.

``serial`` (here) runs cells one after another in this process; ``process``
(``gradbench.sweep.process_pool``) keeps a pool of worker processes on this machine; ``ray``
(``gradbench.sweep.ray_executor``) runs them as Ray tasks on a laptop or a cluster;
``gradbench.sweep.executor_names`` makes one by name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from gradbench.grid.cell import Cell
from gradbench.run.result import RunResult, now

__all__ = ["CellJob", "Executor", "ExecutorError", "SerialExecutor", "check_pooled_devices", "crashed_result", "visible_gpus"]


class ExecutorError(ValueError):
    """The cells cannot run on this executor (one line, for the CLI)."""


class CellJob(Protocol):
    """What an executor runs for each cell. Picklable, so it travels to worker processes and
    Ray workers; its contents are the caller's business."""

    def start(self) -> None:
        """Prepare a fresh worker before its first cell (import plugins); raise if it cannot."""
        ...

    def alongside(self, runs: int) -> CellJob:
        """The same job, told how many cells run at once (recorded with each run's timings)."""
        ...

    def __call__(self, cell: Cell, on_steps: Callable[[int], None] | None = None) -> RunResult:
        """Run one cell; ``on_steps`` is called between steps (a worker checks on its driver)."""
        ...


class Executor(Protocol):
    def check(self, cells: Sequence[Cell]) -> None:
        """Raise ``ExecutorError`` if ``cells`` cannot run on this executor."""
        ...

    def map(self, job: CellJob, cells: Iterator[Cell]) -> Iterator[RunResult]:
        """Run cells pulled from ``cells`` (one per free slot) and yield each result when ready."""
        ...

    def close(self) -> None: ...


def crashed_result(cell: Cell, error: str, started: float) -> RunResult:
    """The stored record of a cell whose worker kept dying: ``failed``, with the cause."""
    result = RunResult(cell=cell, status="failed", error=error, started_at=now(), finished_at=now())
    result.wall_time_s = time.perf_counter() - started
    return result


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries for its workers."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()] if visible else []
    count = torch.cuda.device_count()
    return entries[:count] if entries else [str(index) for index in range(count)]


def check_pooled_devices(cells: Sequence[Cell], executor: str) -> None:
    """Each pooled worker sees only its own GPU, as ``cuda``/``cuda:0``: a cell pinned to another
    index cannot run there (and renaming its device would change its key)."""
    pinned = sorted({c.device for c in cells if c.device.startswith("cuda:") and c.device != "cuda:0"})
    if pinned:
        raise ExecutorError(
            f"device {pinned[0]!r} cannot run on the {executor} executor: each worker is given one GPU of its own; "
            "use --device cuda (choices with this executor: cpu, cuda)"
        )


class SerialExecutor:
    """Runs cells one after another in this process."""

    def check(self, cells: Sequence[Cell]) -> None:
        pass

    def map(self, job: CellJob, cells: Iterator[Cell]) -> Iterator[RunResult]:
        job.start()
        for cell in cells:
            yield job(cell)

    def close(self) -> None:
        pass
