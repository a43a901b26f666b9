"""Executors: how cells are run. Each cell is independent, so any executor may run them in any
order; results come back to the driver, which alone writes the store.

Only the serial executor exists so far; the process pool and Ray plug in behind the same
``map`` interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from gradbench.grid import Cell
from gradbench.train import RunResult

__all__ = ["Executor", "SerialExecutor", "EXECUTORS", "make_executor"]

RunFn = Callable[[Cell], RunResult]


class Executor(Protocol):
    def map(self, run: RunFn, cells: Iterable[Cell]) -> Iterator[RunResult]:
        """Run every cell and yield each result as soon as it is ready."""
        ...


class SerialExecutor:
    """Runs cells one after another in this process."""

    def map(self, run: RunFn, cells: Iterable[Cell]) -> Iterator[RunResult]:
        for cell in cells:
            yield run(cell)


EXECUTORS: dict[str, Callable[[], Executor]] = {"serial": SerialExecutor}


def make_executor(name: str) -> Executor:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose from: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
