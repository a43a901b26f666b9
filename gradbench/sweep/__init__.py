"""Running a grid: skip what is stored, claim and run the rest somewhere, store each result.

Modules: ``driver`` (``run_sweep``: the store's only writer, the progress bar), ``executor``
(the interface every executor has, and ``serial``), ``process_pool`` (worker processes on this
machine, one per core or GPU), ``ray_executor`` (Ray tasks on a cluster) and ``executor_names``
(them by name).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.sweep.driver import SweepSummary, run_sweep
    from gradbench.sweep.executor import CellJob, Executor, ExecutorError, SerialExecutor
    from gradbench.sweep.executor_names import EXECUTORS, make_executor
    from gradbench.sweep.process_pool import ProcessExecutor, WorkerStartError
    from gradbench.sweep.ray_executor import RayExecutor

__getattr__, __dir__, __all__ = attach(__name__, __file__)
