"""Per-step timing without synchronising inside the timed region.

On the CPU a step is timed with ``time.perf_counter``. On CUDA the host clock would only measure
how long it took to *queue* the kernels, so each step is bracketed by CUDA events instead;
their elapsed times are read after one synchronisation in ``collect()``, which the runner calls
outside the timed region (at the same cadence as the gradient monitor's read-back).
"""

from __future__ import annotations

import time

import torch

__all__ = ["StepTimer"]


class StepTimer:
    """Times each ``start()``/``stop()`` pair; ``collect()`` returns the durations in seconds."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cuda = device.type == "cuda"
        self._pending: list[tuple[object, object]] = []
        self._started: object = None

    def start(self) -> None:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            # On the step's own device: a bare record() uses the *current* device's stream,
            # which for cuda:1 would be cuda:0's idle stream.
            event.record(torch.cuda.current_stream(self.device))
            self._started = event
        else:
            self._started = time.perf_counter()

    def stop(self) -> None:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self._pending.append((self._started, event))
        else:
            self._pending.append((self._started, time.perf_counter()))

    def collect(self) -> list[float]:
        """Durations of the steps timed since the last call (synchronises on CUDA)."""
        if self._cuda:
            if self._pending:
                self._pending[-1][1].synchronize()  # type: ignore[attr-defined]
            durations = [start.elapsed_time(end) / 1000.0 for start, end in self._pending]  # type: ignore[attr-defined]
        else:
            durations = [end - start for start, end in self._pending]  # type: ignore[operator]
        self._pending.clear()
        return durations
