"""``RunContext``: what a cell needs besides itself, wherever it runs.

The sweep hands one to its executor, which treats it as an opaque job (``CellJob`` in
``gradbench.sweep.executor``): it is pickled to worker processes and Ray workers, started once
per worker (plugins imported), then called once per cell. Where real datasets live is part of
it and not of the ``Cell``: the same data read from another folder is the same run, so the
cell's key must not change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from gradbench.grid.cell import Cell
from gradbench.plugins import load_entry_points, load_plugins
from gradbench.run.result import RunResult
from gradbench.run.train import run_cell
from gradbench.tasks.image_datasets import DataOptions

__all__ = ["RunContext"]


@dataclass(frozen=True)
class RunContext:
    """The plugins to import and where real datasets live, for every cell of a sweep.

    Attributes:
        data_options: Where MNIST, Fashion-MNIST and CIFAR-10 are read from (default:
            ``$GRADBENCH_DATA``, else the user's cache).
        plugins: Modules or ``.py`` files that register tasks, optimizers, ... (``.py`` files as
            absolute paths: a worker's directory is not the driver's). The installed
            ``gradbench.plugins`` entry points are loaded as well, without being listed.
        concurrent_runs: Cells running at once beside this one, recorded with its timings.
    """

    data_options: DataOptions | None = None
    plugins: tuple[str, ...] = ()
    concurrent_runs: int = 1

    def start(self) -> None:
        """Load the installed plugins' entry points and import the plugins (once per process):
        a fresh worker has none of the driver's registrations until it does. The entry points
        come first and up front, as in ``gradbench run``'s driver, so a plugin that replaces a
        built-in does so before any cell runs, here as there."""
        load_entry_points()
        load_plugins(self.plugins)

    def alongside(self, runs: int) -> RunContext:
        return replace(self, concurrent_runs=runs)

    def __call__(self, cell: Cell, on_steps: Callable[[int], None] | None = None) -> RunResult:
        self.start()
        result = run_cell(cell, data_options=self.data_options, on_steps=on_steps)
        # Step times measured beside other workers share the machine with them: say so.
        result.env["concurrent_runs"] = self.concurrent_runs
        result.env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        result.env["worker_pid"] = os.getpid()
        return result
