"""Step timing: wall time and CPU time on the CPU, with the CPU clock that sees the step's work."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import torch

from gradbench.grid import Cell, expand, parse_suite
from gradbench.run import run_cell
from gradbench.run.timing import CPU_CLOCKS, StepTimer, cpu_clock_for

# What the CPU interval holds beyond the step: two perf_counter reads and an assignment.
CLOCK_SLACK_S = 50e-6
BURN_S = 0.03  # CPU time a helper thread spends inside a timed region


def cell(**axes) -> Cell:
    (only,) = expand(parse_suite("").with_overrides(axes))
    return only


def test_a_one_thread_cpu_run_stores_each_steps_cpu_time_within_its_wall_time(small_mlp_task):
    result = run_cell(cell(tasks=[small_mlp_task], steps=[60], eval_every=20, threads=1))
    assert result.status == "done", result.error
    assert result.env["step_cpu_clock"] == "thread_time"
    assert len(result.step_cpu_times) == len(result.step_times) == 60
    for cpu, wall in zip(result.step_cpu_times, result.step_times):
        assert 0 < cpu <= wall + CLOCK_SLACK_S
    assert result.metrics()["median_step_cpu_s"] == statistics.median(result.step_cpu_times)


@pytest.mark.parametrize("threads, clock", [(1, "thread_time"), (2, "process_time")])
def test_the_recorded_clock_follows_the_runs_thread_count(small_mlp_task, threads, clock):
    previous = torch.get_num_threads()
    try:
        result = run_cell(cell(tasks=[small_mlp_task], steps=[2], threads=threads))
    finally:
        torch.set_num_threads(previous)
    assert result.env["threads"] == threads and result.env["step_cpu_clock"] == clock
    assert len(result.step_cpu_times) == 2


def _burn_on_another_thread() -> None:
    """Spend ``BURN_S`` of CPU on a helper thread while this one waits for it (as torch's pool
    threads work while the calling thread waits for them)."""

    def burn() -> None:
        start = time.thread_time()
        while time.thread_time() - start < BURN_S:
            pass

    helper = threading.Thread(target=burn)
    helper.start()
    helper.join()


@pytest.mark.parametrize("threads", [1, 2])
def test_each_clock_sees_what_its_thread_count_runs_on(threads):
    """With one torch thread the step's work is on the calling thread and nothing else counts;
    with more, work on other threads of the process counts too."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timer = StepTimer(torch.device("cpu"))
    finally:
        torch.set_num_threads(previous)
    assert timer.cpu_clock == cpu_clock_for(torch.device("cpu"), threads)
    timer.start()
    _burn_on_another_thread()
    timer.stop()
    (wall,), (cpu,) = timer.collect()
    if threads == 1:
        assert cpu < BURN_S  # the helper's work is not this thread's
    else:
        # No upper bound: process_time also counts whatever other threads this test process
        # still runs (earlier tests' pools and heartbeats), so it may exceed the wall time.
        assert cpu >= BURN_S


def test_collect_returns_each_step_once():
    timer = StepTimer(torch.device("cpu"))
    for _ in range(3):
        timer.start()
        timer.stop()
    wall, cpu = timer.collect()
    assert len(wall) == len(cpu) == 3 and all(t >= 0 for t in wall + cpu)
    assert timer.collect() == ([], [])


def test_cuda_has_no_cpu_clock():
    """On CUDA the CUDA-event time is the step time; no CPU time is taken or stored."""
    assert cpu_clock_for(torch.device("cuda"), 1) is None and cpu_clock_for(torch.device("cuda:1"), 4) is None
    assert set(CPU_CLOCKS) == {"thread_time", "process_time"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_cuda_run_stores_event_times_and_no_cpu_times():
    result = run_cell(cell(tasks=["linreg"], steps=[20], device="cuda"))  # linreg: no dataset package needed
    assert result.status == "done", result.error
    assert len(result.step_times) == 20 and all(t > 0 for t in result.step_times)
    assert result.step_cpu_times == [] and result.env["step_cpu_clock"] is None
    assert result.metrics()["median_step_cpu_s"] is None
