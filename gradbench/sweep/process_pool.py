"""The ``process`` executor: a pool of worker processes on this machine.

One worker per CPU core this process may use (divided by the cells' thread count), or one per
visible GPU when the cells run on CUDA, each pinned to its GPU through ``CUDA_VISIBLE_DEVICES``.
A worker that dies (killed, out of memory, a segfault in a kernel) costs its cell one attempt;
the cell is retried on a fresh worker, and stored as ``failed`` with the cause once its
attempts are spent.

How workers start (``start_method``):

``forkserver`` (the default)
    The first pool of a driver process starts Python's fork server: a fresh interpreter (not a
    fork of the driver, so none of its threads, open database or CUDA state) that imports
    torch and gradbench once (``PRELOAD``) and then forks each worker. A worker is ready in
    a fraction of a second instead of paying torch's import (1.5-2 s of CPU) again: on a busy machine,
    and for every replacement worker and later pool of the same driver, that is the
    difference. Importing torch does not initialise CUDA, so neither the fork server nor its
    children hold any CUDA state. A forked worker has the fork server's environment, not the
    driver's: the driver sends its environment (and the worker's GPU) with the worker, which
    sets them first thing, before anything in it can initialise CUDA. When the cells run on
    CUDA, each worker then checks that CUDA sees exactly its own GPU, and refuses to start
    otherwise (a main module that initialises CUDA when imported, before the worker could pin
    it: see the README).
``spawn``
    Each worker is a fresh interpreter that imports torch, gradbench and the main module
    itself, with its ``CUDA_VISIBLE_DEVICES`` in its environment from its first instruction.
    Slower to start; for a script whose import must see the pinned GPU.

Either way each worker imports the main module again (put ``run_sweep`` under
``if __name__ == "__main__":``) and the ``--plugin`` modules, and keeps what it loads: a worker
that runs several cells of one task reads its dataset once (the loaders in
``gradbench.tasks`` keep recent datasets and their device copies in memory).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from gradbench.grid.cell import Cell
from gradbench.run.result import RunResult
from gradbench.sweep.executor import CellJob, ExecutorError, check_pooled_devices, crashed_result, visible_gpus

__all__ = ["ProcessExecutor", "WorkerStartError", "MAX_ATTEMPTS", "START_METHODS", "PRELOAD"]

MAX_ATTEMPTS = 3  # a cell whose worker dies this many times is stored as failed
START_METHODS = ("forkserver", "spawn")
# Windows has no fork server: its workers are spawned.
_DEFAULT_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
# What the fork server imports before it forks any worker: what every worker needs anyway
# (torch, the runner, every built-in task). Not the main module: a user's script imported there
# would run outside any worker's GPU pinning, and Python versions differ on whether it does.
PRELOAD = ["torch", "gradbench.sweep.process_pool", "gradbench.run.context", "gradbench.tasks"]

_READY = "ready"


class WorkerStartError(ExecutorError):
    """A pool worker died or failed before it could run anything: no cell is to blame."""


def _worker_main(connection: Connection, job: CellJob, environment: dict[str, str], gpu: str | None, check_gpu: bool) -> None:
    """A pool worker: take the driver's environment and its GPU, say it is ready, then run each
    cell the driver sends and send back its result; stop on ``None``, on a closed pipe, or
    (checked between steps) when the driver has died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    # A forked worker has the fork server's environment (as the driver's was when the server
    # started): take the driver's as it is now, and pin the GPU, before CUDA initialises.
    os.environ.clear()
    os.environ.update(environment)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    # The driver is not this process's parent under the fork server: watch the pipe that the
    # driver holds open for its child instead (it reads as closed once the driver is gone).
    driver = multiprocessing.parent_process()

    def orphaned(_: int) -> None:
        if driver is not None and not driver.is_alive():  # nobody will take this result
            os._exit(1)

    try:
        if check_gpu:
            _check_pinned(gpu)
        job.start()
    except Exception as error:  # the driver reports it as the sweep's error, not a cell's
        connection.send(f"{type(error).__name__}: {error}")
        return
    connection.send(_READY)
    while True:
        try:
            cell = connection.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            return
        connection.send(job(cell, on_steps=orphaned))


def _check_pinned(gpu: str | None) -> None:
    """Refuse to run CUDA cells where CUDA sees other GPUs than this worker's own: it was
    initialised before the pin was set (by the main module's import, say), so the pin has no
    effect and every such worker would share the first GPU."""
    import torch

    # The CUDA runtime's count: torch.cuda.device_count() asks NVML, which reads
    # CUDA_VISIBLE_DEVICES afresh and so cannot tell.
    count = torch._C._cuda_getDeviceCount()
    if count == 0:
        raise RuntimeError(f"the worker pinned to CUDA_VISIBLE_DEVICES={gpu} sees no GPU: pin workers to this machine's GPUs (ProcessExecutor(gpus=...))")
    if count != 1:
        raise RuntimeError(
            f"the worker pinned to CUDA_VISIBLE_DEVICES={gpu} sees {count} GPUs, not 1: CUDA was initialised before the pin "
            "(does the main module use CUDA when imported? keep that under `if __name__ == \"__main__\":`, "
            "or use ProcessExecutor(start_method=\"spawn\"))"
        )


@dataclass
class _Worker:
    process: Any
    connection: Connection
    slot: int  # its place in the pool, kept by its replacement
    gpu: str | None
    ready: bool = False  # started up (imports, plugins): from then on a death is its cell's
    cell: Cell | None = None
    attempt: int = 0
    started: float = 0.0
    launched: float = 0.0  # when the driver started it (perf_counter), for its start-up time


@dataclass
class ProcessExecutor:
    """A pool of worker processes on this machine, forked from a fork server that has imported
    torch and gradbench (no state of the driver is inherited, CUDA included).

    Attributes:
        workers: Worker processes (default: one per visible GPU when any cell runs on CUDA,
            else one per CPU core this process may use, divided by the cells' thread count).
        max_attempts: Attempts per cell whose worker dies before it is stored as ``failed``.
        gpus: ``CUDA_VISIBLE_DEVICES`` entries to pin the workers to, round robin (default: every
            visible GPU when any cell runs on CUDA, else none).
        start_method: ``forkserver`` (the default where there is one: workers ready at once) or
            ``spawn`` (each worker imports everything itself); see the module docstring.
        startup_s: Seconds from starting each worker to its saying it is ready (imports,
            plugins), in the order they became ready; for benchmarks.
        first_ready_s: Seconds from the start of the last ``map`` to its first ready worker.
    """

    workers: int | None = None
    max_attempts: int = MAX_ATTEMPTS
    gpus: list[str] | None = None
    start_method: str = field(default_factory=lambda: _DEFAULT_START_METHOD)
    startup_s: list[float] = field(default_factory=list, init=False)
    first_ready_s: float | None = field(default=None, init=False)
    _pool: list[_Worker] = field(default_factory=list, init=False, repr=False)
    _gpus: list[str] = field(default_factory=list, init=False, repr=False)
    _check_gpu: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ExecutorError(f"invalid --workers {self.workers}: give a number of worker processes >= 1")
        if self.start_method not in START_METHODS:
            raise ExecutorError(f"invalid start_method {self.start_method!r}; choose from: {', '.join(START_METHODS)}")

    def check(self, cells: Sequence[Cell]) -> None:
        check_pooled_devices(cells, "process")
        uses_cuda = any(c.device.startswith("cuda") for c in cells)
        self._check_gpu = uses_cuda
        self._gpus = list(self.gpus) if self.gpus is not None else (visible_gpus() if uses_cuda else [])
        if uses_cuda and not self._gpus:
            raise ExecutorError("cells on device 'cuda' but no GPU is visible to the process executor; choose from: --device cpu")
        if self.workers is None:
            if self._gpus:
                self.workers = len(self._gpus)
            else:
                cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
                threads = max((c.threads for c in cells), default=1)
                self.workers = max(1, cores // threads)
        if cells:
            self.workers = min(self.workers, len(cells))

    def _start(self, job: CellJob, slot: int) -> _Worker:
        context: Any = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # Read when the server starts (the first pool of this process); later calls change nothing.
            context.set_forkserver_preload(PRELOAD)
        driver_end, worker_end = context.Pipe()
        gpu = self._gpus[slot % len(self._gpus)] if self._gpus else None
        arguments = (worker_end, job, dict(os.environ), gpu, self._check_gpu)
        process = context.Process(target=_worker_main, args=arguments, name=f"gradbench-worker-{slot}", daemon=True)
        # A spawned child takes the environment as it is when it starts: pin its GPU there too, so
        # it is set before anything in the child (its import of the main module) can initialise CUDA.
        spawned = self.start_method == "spawn"
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        # A child (or the fork server, whose children inherit its handlers) started while SIGINT
        # is ignored keeps ignoring it from its first instruction (Python leaves an inherited
        # SIG_IGN alone), so Ctrl-C during its imports is the driver's alone. Only the main
        # thread may change signal handlers.
        main_thread = threading.current_thread() is threading.main_thread()
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            if gpu is not None and spawned:
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            launched = time.perf_counter()
            process.start()
        except (OSError, EOFError) as error:  # the fork server could not start, or died
            raise WorkerStartError(f"a worker process could not start: the {self.start_method} server failed ({type(error).__name__}: {error})") from None
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, handler if handler is not None else signal.SIG_DFL)
            if gpu is not None and spawned:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
        worker_end.close()
        worker = _Worker(process, driver_end, slot, gpu, launched=launched)
        self._pool.append(worker)
        return worker

    def map(self, job: CellJob, cells: Iterator[Cell]) -> Iterator[RunResult]:
        if self.workers is None:
            raise RuntimeError("ProcessExecutor.check(cells) must run before map")
        job = job.alongside(self.workers)
        mapped = time.perf_counter()
        self.startup_s, self.first_ready_s = [], None
        retries: deque[tuple[Cell, int, float]] = deque()
        exhausted = False
        slots = list(range(self.workers))
        idle: list[_Worker] = []
        busy: list[_Worker] = []
        try:
            while True:
                while (idle or slots) and (retries or not exhausted):
                    if retries:
                        cell, attempt, started = retries.popleft()
                    else:
                        pulled = next(cells, None)
                        if pulled is None:
                            exhausted = True
                            break
                        cell, attempt, started = pulled, 1, time.perf_counter()
                    worker = idle.pop() if idle else self._start(job, slots.pop())
                    try:
                        worker.connection.send(cell)
                    except OSError:  # it died while idle: not the cell's fault
                        self._discard(worker)
                        slots.append(worker.slot)
                        retries.appendleft((cell, attempt, started))
                        continue
                    worker.cell, worker.attempt, worker.started = cell, attempt, started
                    busy.append(worker)
                if not busy:
                    return
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
                for worker in [w for w in busy if w.connection in ready or w.process.sentinel in ready]:
                    busy.remove(worker)
                    failed_cell = worker.cell
                    assert failed_cell is not None
                    result = None
                    try:
                        if worker.connection.poll():
                            result = worker.connection.recv()
                    except (EOFError, OSError):
                        result = None
                    if result == _READY:
                        worker.ready = True
                        self.startup_s.append(time.perf_counter() - worker.launched)
                        if self.first_ready_s is None:
                            self.first_ready_s = time.perf_counter() - mapped
                        busy.append(worker)  # its cell is still to come
                        continue
                    if isinstance(result, str) or (result is None and not worker.ready):
                        raise WorkerStartError(_start_failure(result, worker))
                    if result is not None:
                        worker.cell = None
                        idle.append(worker)
                        yield result
                        continue
                    # The worker died with the cell: replace it and retry the cell, or give up.
                    worker.process.join(timeout=5)
                    cause = _exit_cause(worker.process.exitcode)
                    self._discard(worker)
                    slots.append(worker.slot)
                    if worker.attempt < self.max_attempts:
                        retries.append((failed_cell, worker.attempt + 1, worker.started))
                    else:
                        yield crashed_result(failed_cell, f"WorkerDied: the worker process running this cell died ({cause}) on each of {worker.attempt} attempts", worker.started)
        finally:
            self.close()

    def _discard(self, worker: _Worker) -> None:
        worker.connection.close()
        if worker in self._pool:
            self._pool.remove(worker)

    def close(self) -> None:
        """Ask every worker to stop; terminate those still running a cell (Ctrl-C, an error)."""
        for worker in self._pool:
            try:
                worker.connection.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for worker in self._pool:
            if worker.cell is not None:
                worker.process.terminate()
            worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._pool.clear()


def _start_failure(message: str | None, worker: _Worker) -> str:
    if message is not None:
        return f"a worker process could not start: {message}"
    worker.process.join(timeout=5)
    return (
        f"a worker process died while starting ({_exit_cause(worker.process.exitcode)}), before it ran any cell; "
        "if you call run_sweep from a script, put that call under `if __name__ == \"__main__\":` "
        "(each worker imports your script's module again)"
    )


def _exit_cause(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
