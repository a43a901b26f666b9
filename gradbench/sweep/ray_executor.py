"""The Ray executor: each cell is a Ray task (Ray core, not Ray Tune), on a laptop or a cluster.

Ray does the distributed work: it places each task on a node with the resources it asks for
(``cpus_per_run`` CPUs, ``gpus_per_run`` GPUs), gives it its GPUs through
``CUDA_VISIBLE_DEVICES``, and retries a task whose worker process or node died (``max_retries``).
The driver keeps as many tasks in flight as the cluster can run at once, claims each cell in
the store as it submits it, and stores each result itself: workers never touch the store, so a
store on the driver's local disk serves a cluster of any size.

Every node needs gradbench (and any ``--plugin`` module) installed, and for real datasets, the
data directory at the same path.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradbench.grid.cell import Cell
from gradbench.run.result import RunResult
from gradbench.sweep.executor import CellJob, ExecutorError, check_pooled_devices, crashed_result

__all__ = ["RayExecutor"]


def _run_remote(job: CellJob, cell: Cell) -> RunResult:
    return job(cell)


def _runs_per_node(node: dict[str, float], cpus: float, gpus: float) -> int:
    """How many cells at once fit on one node: its CPUs and GPUs together (a fractional GPU
    request packs ``floor(1 / gpus)`` tasks onto each whole GPU, as Ray places them)."""
    fits = []
    if cpus > 0:
        fits.append(math.floor(node.get("CPU", 0.0) / cpus + 1e-9))
    if gpus > 0:
        whole = math.floor(node.get("GPU", 0.0) + 1e-9)
        fits.append(whole * math.floor(1 / gpus + 1e-9) if gpus < 1 else math.floor(whole / gpus + 1e-9))
    return min(fits) if fits else 1 << 30


def _check_reachable(address: str | None) -> None:
    """A ``HOST:PORT`` that nothing answers on makes ``ray.init`` retry for minutes: try it first."""
    if not address or address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"invalid --ray-address {address!r}; choose from: auto, HOST:PORT, ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ExecutorError(f"cannot reach Ray at {address!r}: {error.strerror or error}; is the cluster running (ray start --head)?") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError("the ray executor needs Ray, which is not installed: pip install 'gradbench[ray]'") from None
    return ray


@dataclass
class RayExecutor:
    """Runs cells as Ray tasks.

    Attributes:
        address: A running cluster (``auto``, or ``HOST:PORT``); ``None`` starts a local Ray
            (or joins the one ``RAY_ADDRESS`` names), as ``ray.init()`` does.
        cpus_per_run: CPUs each task reserves (default: the cells' thread count).
        gpus_per_run: GPUs each task reserves, fractions allowed (default: 1 when the cells run
            on CUDA, else 0).
        max_retries: Times Ray reruns a task whose worker died before the cell is stored as
            ``failed``.
        init_options: Extra ``ray.init`` arguments (tests start a local cluster with fake GPUs).
    """

    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None
    max_retries: int = 2
    init_options: dict[str, Any] = field(default_factory=dict)
    _capacity: int = field(default=1, init=False, repr=False)
    _started_ray: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        """Check the resources asked for (those given; the defaults are good), before anything
        starts: so ``gradbench run --dry-run`` checks them too."""
        for flag, value in (("--cpus-per-run", self.cpus_per_run), ("--gpus-per-run", self.gpus_per_run)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ExecutorError(f"invalid {flag} {value:g}: give a number >= 0")
        if self.gpus_per_run is not None and self.gpus_per_run > 1 and not float(self.gpus_per_run).is_integer():
            # Ray shares one GPU between tasks, never several GPUs fractionally.
            raise ExecutorError(f"invalid --gpus-per-run {self.gpus_per_run:g}: above 1 it must be a whole number of GPUs (below 1, tasks share a GPU)")

    def check(self, cells: Sequence[Cell]) -> None:
        """Connect to (or start) Ray and check that the cluster can run these cells: a task
        asking for more than any node has would otherwise wait forever."""
        ray = _import_ray()
        check_pooled_devices(cells, "ray")
        uses_cuda = any(c.device.startswith("cuda") for c in cells)
        gpus_given = self.gpus_per_run is not None
        if self.gpus_per_run is None:
            self.gpus_per_run = 1.0 if uses_cuda else 0.0
        if self.cpus_per_run is None:
            self.cpus_per_run = float(max((c.threads for c in cells), default=1))
        if uses_cuda and self.gpus_per_run == 0:
            raise ExecutorError("cells on device 'cuda' need --gpus-per-run > 0 with the ray executor (each task gets its GPUs from Ray)")
        if not ray.is_initialized():
            _check_reachable(self.address)
            options = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False, **self.init_options}
            # ray.init replaces the SIGTERM handler with one that calls sys.exit: keep the
            # caller's (the CLI stops a sweep on SIGTERM as on Ctrl-C).
            main_thread = threading.current_thread() is threading.main_thread()
            sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, ValueError, RuntimeError) as error:
                where = self.address or "a new local cluster"
                raise ExecutorError(f"cannot start or reach Ray at {where!r}: {str(error).splitlines()[0]}") from None
            finally:
                if sigterm is not None:
                    signal.signal(signal.SIGTERM, sigterm)
            self._started_ray = True
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        per_node = [_runs_per_node(node, self.cpus_per_run, self.gpus_per_run) for node in nodes]
        if not any(per_node):
            # A task that fits no node would wait in Ray's queue forever.
            shown = "; ".join(f"{node.get('CPU', 0):g} CPU + {node.get('GPU', 0):g} GPU" for node in nodes) or "none alive"
            self.close()
            if uses_cuda and not gpus_given and not any(node.get("GPU", 0) for node in nodes):
                raise ExecutorError(f"the cells run on 'cuda' but no node of the Ray cluster has a GPU (nodes: {shown}); choose from: --device cpu, or add GPU nodes")
            raise ExecutorError(
                f"no node of the Ray cluster can run one cell with --cpus-per-run {self.cpus_per_run:g} --gpus-per-run {self.gpus_per_run:g} "
                f"(nodes: {shown}); lower them or add nodes"
            )
        # Tasks in flight: what the cluster can run at once (more would only wait in Ray's
        # queue, holding claims that another driver could have used).
        self._capacity = max(1, min(sum(per_node), len(cells) or 1))

    def map(self, job: CellJob, cells: Iterator[Cell]) -> Iterator[RunResult]:
        ray = _import_ray()
        assert self.cpus_per_run is not None and self.gpus_per_run is not None, "RayExecutor.check(cells) must run before map"
        remote = ray.remote(_run_remote).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.max_retries, retry_exceptions=False
        )
        job = job.alongside(self._capacity)
        pending: dict[Any, tuple[Cell, float]] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self._capacity:
                    cell = next(cells, None)
                    if cell is None:
                        exhausted = True
                        break
                    pending[remote.remote(job, cell)] = (cell, time.perf_counter())
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell, started = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as error:  # the job itself raised (a plugin, say)
                        cause = error.cause if error.cause is not None else error
                        result = crashed_result(cell, f"{type(cause).__name__}: {str(cause).strip()}", started)
                    except ray.exceptions.RayError as error:  # its worker or node died on every attempt
                        lines = [line for line in str(error).strip().splitlines() if line.strip()]
                        cause = f": {lines[0]}" if lines else ""
                        result = crashed_result(cell, f"{type(error).__name__}{cause} (after {self.max_retries + 1} attempts)", started)
                    yield result
        finally:
            # Ctrl-C or an error in the driver: stop what is still running. A cluster this
            # executor started goes down whole in close(), so its tasks are not cancelled one
            # by one: ray.cancel racing a task that is just completing aborts the driver (a Ray
            # core check, "Tried to complete task that was not pending", seen with Ray 2.60),
            # and the claims would then never be released. On a joined cluster only the tasks
            # not yet finished are cancelled, which narrows that window.
            if pending and not self._started_ray:
                _, unfinished = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in unfinished:
                    ray.cancel(ref, force=True)

    def close(self) -> None:
        """Shut down the Ray this executor started, and with it every task still running (a
        cluster it joined stays up)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
