"""Per-step timing without synchronising inside the timed region.

On the CPU a step is timed twice: wall time with ``time.perf_counter``, and the CPU time this
process spent on it, which other processes on a shared machine do not inflate (they take cores
away, so the wall time grows, but the step's own CPU time stays). Which CPU clock depends on
where torch runs the step's operations:

- one intra-op thread: every operation, the backward pass included, runs on the calling
  thread, so ``time.thread_time`` (this thread only) is exact and sees nothing else;
- more threads: the work is spread over torch's pool threads, which ``thread_time`` would
  miss, so ``time.process_time`` (every thread of this process). It also counts whatever else
  runs threads in the process while the step runs: a serial sweep's claim heartbeat (one
  SQLite update every 30 s), Ray's worker threads under the ``ray`` executor (about 2 ms of
  CPU a second), and the pool threads' spinning while they wait for each other, which grows
  when other processes hold the cores: only the one-thread CPU time is blind to them.

``StepTimer.cpu_clock`` names the clock it chose; the runner stores it in the run's environment
(``step_cpu_clock``). Each CPU clock read costs about half a microsecond (a system call; the
wall clock's is a few tens of nanoseconds), so the wall clock is read inside the CPU clock:
the wall interval holds exactly the step, as before.

On CUDA the host clock would only measure how long it took to *queue* the kernels, so each
step is bracketed by CUDA events instead, and that is the step time; there is no CPU time
(the host mostly waits on the GPU). Event times are read after one synchronisation in
``collect()``, which the runner calls outside the timed region (at the same cadence as the
gradient monitor's read-back).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["CPU_CLOCKS", "StepTimer", "cpu_clock_for"]

# The CPU clocks a step can be timed with, by the name stored in a run's environment.
CPU_CLOCKS: dict[str, Callable[[], float]] = {"thread_time": time.thread_time, "process_time": time.process_time}


def cpu_clock_for(device: torch.device, threads: int) -> str | None:
    """The ``CPU_CLOCKS`` name that times a step on ``device`` with ``threads`` intra-op
    threads (``None`` on CUDA: its step time is the CUDA events')."""
    if device.type == "cuda":
        return None
    return "thread_time" if threads == 1 else "process_time"


class StepTimer:
    """Times each ``start()``/``stop()`` pair; ``collect()`` returns the durations in seconds.

    Attributes:
        cpu_clock: The ``CPU_CLOCKS`` name used on the CPU (chosen from torch's thread count
            when the timer is made), ``None`` on CUDA.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cuda = device.type == "cuda"
        self.cpu_clock = cpu_clock_for(device, torch.get_num_threads())
        self._cpu_time = CPU_CLOCKS[self.cpu_clock or "process_time"]  # read on the CPU only
        self._pending: list[tuple[object, object]] = []  # CUDA: each step's pair of events
        self._walls: list[float] = []  # CPU: each step's durations, worked out at stop()
        self._cpus: list[float] = []
        self._started: object = None
        self._wall_started = 0.0
        self._cpu_started = 0.0

    def start(self) -> None:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            # On the step's own device: a bare record() uses the *current* device's stream,
            # which for cuda:1 would be cuda:0's idle stream.
            event.record(torch.cuda.current_stream(self.device))
            self._started = event
        else:
            self._cpu_started = self._cpu_time()
            self._wall_started = time.perf_counter()

    def stop(self) -> None:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self._pending.append((self._started, event))
        else:
            wall = time.perf_counter()
            cpu = self._cpu_time()
            self._walls.append(wall - self._wall_started)
            self._cpus.append(cpu - self._cpu_started)

    def collect(self) -> tuple[list[float], list[float]]:
        """Wall and CPU durations of the steps timed since the last call (synchronises on
        CUDA, where the CPU durations are empty)."""
        if self._cuda:
            if self._pending:
                self._pending[-1][1].synchronize()  # type: ignore[attr-defined]
            durations = [start.elapsed_time(end) / 1000.0 for start, end in self._pending]  # type: ignore[attr-defined]
            self._pending.clear()
            return durations, []
        walls, cpus = self._walls, self._cpus
        self._walls, self._cpus = [], []
        return walls, cpus
