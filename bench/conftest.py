"""Options, fixtures and machine info for gradbench's training-step benchmarks.

    pytest bench/                                  # the default run (a few minutes on 2 CPU cores)
    pytest bench/ --gb-quick                       # one benchmark per group (under a minute)
    pytest bench/ --gb-device cuda                 # on the GPU (timings synchronise the device)
    pytest bench/ --gb-threads 1                   # torch CPU threads (default 1: stable numbers)
    pytest bench/ --benchmark-group-by=group       # tables compare like with like (the default)
    pytest bench/test_health_overhead.py -s        # what each gradient-health statistic costs
    pytest bench/test_executors.py                 # process pool: 2 workers vs 1 on a CPU-bound grid
    pytest bench/ --gb-clock wall                  # interleaved comparisons on the wall clock
    pytest bench/test_health_overhead.py -s --gb-rounds 100   # tighter ratios, longer run
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gradbench.axes import check_device
from gradbench.grid import AXES, Cell, expand, parse_suite
from gradbench.run.benchmark import CLOCKS, machine_info

_RATIOS: list[tuple[str, dict[str, float]]] = []
_OVERHEADS: list[tuple[str, dict[str, Any]]] = []
_SCALING: list[tuple[str, dict[str, Any]]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradbench", "gradbench benchmarks")
    group.addoption("--gb-device", default="cpu", help="device to benchmark on: cpu, cuda or cuda:N (default: cpu)")
    group.addoption("--gb-threads", type=int, default=1, help="torch CPU threads (default: 1)")
    group.addoption("--gb-quick", action="store_true", help="run only the quick subset: one benchmark per group")
    group.addoption("--gb-rounds", type=int, default=None, help="rounds of the interleaved comparisons, a multiple of 10 (default: 30; 10 with --gb-quick)")
    group.addoption(
        "--gb-clock", default=None, choices=CLOCKS,
        help="clock of the interleaved comparisons: cpu (this thread's CPU time, blind to other processes; the CPU default) or wall (the only one on CUDA)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "quick: part of the quick subset (--gb-quick)")
    threads = config.getoption("--gb-threads")
    if threads < 1:
        raise pytest.UsageError(f"invalid --gb-threads {threads}: must be >= 1")
    try:
        check_device(config.getoption("--gb-device"))
    except ValueError as error:
        raise pytest.UsageError(f"--gb-device: {error}") from None
    torch.set_num_threads(threads)
    rounds = config.getoption("--gb-rounds")
    if rounds is not None and rounds < 1:
        raise pytest.UsageError(f"invalid --gb-rounds {rounds}: must be >= 1")
    device = torch.device(config.getoption("--gb-device"))
    if config.getoption("--gb-clock") == "cpu" and device.type != "cpu":
        raise pytest.UsageError(f"--gb-clock cpu measures this thread, not {device.type} kernels; use --gb-clock wall")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--gb-quick"):
        return
    selected = [item for item in items if item.get_closest_marker("quick")]
    config.hook.pytest_deselected(items=[item for item in items if item not in selected])
    items[:] = selected


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Store what the timings depend on: torch, CUDA and cuDNN versions, device, threads, dtype."""
    machine_info.update(_machine_info(config))


def _machine_info(config: pytest.Config) -> dict[str, Any]:
    return machine_info(torch.device(config.getoption("--gb-device")))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    scaling = [
        f"{label}: 1 worker {r['one_worker_s']:.1f} s, 2 workers {r['two_workers_s']:.1f} s, speedup {r['speedup']:.2f}x "
        f"(median of {r['pairs']} alternating pair(s), wall clock, worker start-up included)"
        + (f"\n  start-up: {r['startup']}" if "startup" in r else "")
        for label, r in _SCALING
    ]
    if scaling:
        terminalreporter.section("gradbench: process pool, 2 workers vs 1 on a CPU-bound grid")
        for line in scaling:
            terminalreporter.write_line(line)
    if _RATIOS:
        terminalreporter.section("gradbench: runner vs hand-written loop (median s/step, interleaved rounds)")
        for label, ratio in _RATIOS:
            terminalreporter.write_line(
                f"{label}: runner {1e3 * ratio['runner_step_s']:.3f} ms, hand-written {1e3 * ratio['handwritten_step_s']:.3f} ms, "
                f"ratio {ratio['ratio']:.3f} [q1 {ratio['ratio_q1']:.3f}, q3 {ratio['ratio_q3']:.3f}], "
                f"A/A (hand-written vs a copy of itself) {ratio['aa_ratio']:.3f} ({ratio['rounds']} rounds x {ratio['steps']} steps, {ratio['clock']} clock)"
            )
    for label, result in _OVERHEADS:
        terminalreporter.section(
            f"gradbench: health statistics overhead, {label} (ratio of medians per phase of {result['period']} rounds, "
            f"{result['clock']} clock, {result['rounds']} interleaved rounds x {result['steps']} steps; [q1, q3] of per-round ratios)"
        )
        width = max(len(name) for name in result["ratios"])
        for name, entry in result["ratios"].items():
            terminalreporter.write_line(
                f"{name:<{width}}  {1e3 * entry['step_s']:8.3f} ms  x{entry['ratio']:.4f}  "
                f"[{entry['round_ratio_q1']:.3f}, {entry['round_ratio_q3']:.3f}]  vs {entry['reference']}"
            )


@pytest.fixture
def record_ratio():
    """Report a runner/hand-written ratio in the terminal summary."""

    def record(label: str, ratio: dict[str, float]) -> None:
        _RATIOS.append((label, ratio))

    return record


@pytest.fixture
def record_overhead():
    """Report a health-overhead measurement in the terminal summary."""

    def record(label: str, result: dict[str, Any]) -> None:
        _OVERHEADS.append((label, result))

    return record


@pytest.fixture
def record_scaling():
    """Report a process-pool scaling measurement in the terminal summary."""

    def record(label: str, result: dict[str, Any]) -> None:
        _SCALING.append((label, result))

    return record


@pytest.fixture
def gb_device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--gb-device"))


@pytest.fixture
def gb_clock(request: pytest.FixtureRequest, gb_device: torch.device) -> str:
    """The clock of interleaved comparisons: --gb-clock, else cpu on the CPU and wall elsewhere."""
    return request.config.getoption("--gb-clock") or ("cpu" if gb_device.type == "cpu" else "wall")


@pytest.fixture
def make_cell(request: pytest.FixtureRequest):
    """Build one cell on the benchmark device and threads: ``make_cell(tasks=[...], ...)``."""
    device = request.config.getoption("--gb-device")
    threads = request.config.getoption("--gb-threads")

    def make(**axes: Any) -> Cell:
        overrides = {key: [value] if key in AXES and not isinstance(value, list) else value for key, value in axes.items()}
        (cell,) = expand(parse_suite("").with_overrides({**overrides, "device": device, "threads": threads, "steps": [1]}))
        return cell

    return make


@pytest.fixture
def timing(request: pytest.FixtureRequest) -> dict[str, Any]:
    """pytest-benchmark's own time budget per benchmark, for run_benchmark."""
    return {
        "max_time": float(request.config.getoption("benchmark_max_time")),  # given as a string
        "min_rounds": int(request.config.getoption("benchmark_min_rounds")),
    }
