"""Options, fixtures and machine info for gradbench's training-step benchmarks.

    pytest bench/                                  # the default run (about 10 minutes on 2 CPU cores)
    pytest bench/ --gb-quick                       # one benchmark per group (about 1.5 minutes)
    pytest bench/ --gb-device cuda                 # on the GPU (timings synchronise the device)
    pytest bench/ --gb-threads 1                   # torch CPU threads (default 1: stable numbers)
    pytest bench/ --benchmark-group-by=group       # tables compare like with like (the default)
    pytest bench/ -m gated                         # only what the regression gate compares
    pytest bench/ -m "not gated"                   # only the whole-sweep and overhead-ratio benchmarks
    pytest bench/test_health_overhead.py -s        # what each gradient-health statistic costs
    pytest bench/test_executors.py                 # process pool: 2 workers vs 1 on a CPU-bound grid
    pytest bench/ --gb-clock wall                  # every benchmark on the wall clock
    pytest bench/test_health_overhead.py -s --gb-rounds 100   # tighter ratios, longer run
    pytest bench/test_step.py --gb-slowdown 0.15   # test-only: every timed step does 15% more work
    pytest bench/test_step.py --gb-plugin my_optim.py -k "test_optimizer and mlp and (adamw or lion)"
                                                   # your optimizer's step against AdamW's
    pytest bench/test_step.py --gb-optimizers lion,soap,adamw -k test_optimizer
                                                   # the optional extras' optimizers (default: builtin)

Two kinds of benchmark:

- ``gated`` (bench/test_step.py): one training step per round, many rounds; their medians are
  what ``scripts/bench_regression.sh compare`` holds to a saved baseline (the median change
  over all of them, and each one's with ``--benchmark-compare-fail``).
- the rest: whole sweeps timed once (executor scaling) and overhead ratios of interleaved loops
  (runner, health statistics). One round each, or a ratio that is its own comparison: reported
  (``scripts/bench_regression.sh report``), never gated, because one round's time on a shared
  machine moves by far more than 5%.

The benchmarks are generated from the registries, so plugins join them: the installed
packages' ``gradbench.plugins`` entry points are loaded before collection, and ``--gb-plugin``
(repeatable) imports a module or ``.py`` file as ``gradbench run --plugin`` does. An optimizer
they register is benchmarked in the ``optimizer | <task>`` groups beside the built-ins.
``--gb-optimizers`` chooses the optimizers of the per-optimizer benchmarks: ``builtin`` (the
default: torch.optim's and the plugins'), ``all`` (the ``gradbench[optimizers]`` catalogue too,
more than a hundred, hours on a CPU), or names and patterns.

``--gb-clock`` is the clock of every benchmark here: pytest-benchmark's ``--benchmark-timer``
for the step benchmarks and the clock of the interleaved comparisons. ``cpu`` (this thread's
CPU time, ``time.thread_time``) is the default on the CPU with one torch thread, where the whole
step runs on this thread: other processes taking turns on a shared machine do not inflate it.
``wall`` (``time.perf_counter``) is the default otherwise and the only choice on CUDA (the timed
call synchronises the device, so wall time is the step's time) or with more torch threads
(their work is not this thread's). Set the clock with ``--gb-clock``, not ``--benchmark-timer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from pytest_benchmark.timers import default_timer
from pytest_benchmark.utils import NameWrapper

from gradbench.axes import OPTIMIZERS, check_device, parse_spec
from gradbench.plugins import PluginError, load_entry_points, load_plugins
from gradbench.grid import AXES, Cell, expand, parse_suite
from gradbench.run.allocator import keep_freed_memory
from gradbench.run.benchmark import CLOCKS, TimedStep, machine_info

_RATIOS: list[tuple[str, dict[str, float]]] = []
_OVERHEADS: list[tuple[str, dict[str, Any]]] = []
_SCALING: list[tuple[str, dict[str, Any]]] = []
# pytest-benchmark's --benchmark-timer for each clock: the timers of interleaved_times.
_TIMERS = {"wall": time.perf_counter, "cpu": time.thread_time}
_DEFAULT_TIMER = str(NameWrapper(default_timer))  # what --benchmark-timer is when not given


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradbench", "gradbench benchmarks")
    group.addoption("--gb-device", default="cpu", help="device to benchmark on: cpu, cuda or cuda:N (default: cpu)")
    group.addoption("--gb-threads", type=int, default=1, help="torch CPU threads (default: 1)")
    group.addoption("--gb-quick", action="store_true", help="run only the quick subset: one benchmark per group")
    group.addoption("--gb-rounds", type=int, default=None, help="rounds of the interleaved comparisons, a multiple of 10 (default: 30; 10 with --gb-quick)")
    group.addoption(
        "--gb-clock", default=None, choices=CLOCKS,
        help="clock of every benchmark: cpu (this thread's CPU time, blind to other processes; the default on the CPU with one "
        "thread) or wall (the default otherwise, the only one on CUDA or with more threads)",
    )
    group.addoption(
        "--gb-plugin", action="append", default=[], metavar="MODULE",
        help="import a module or .py file that registers optimizers, tasks, ... before the benchmarks are generated (repeatable); "
        "installed packages' 'gradbench.plugins' entry points load without it",
    )
    group.addoption(
        "--gb-optimizers", default="builtin", metavar="WHICH",
        help="the optimizers of the per-optimizer benchmarks: builtin (torch.optim's and plugins', the default), all (the "
        "optional extras' catalogue too, those that train on this machine), or a comma list of names and patterns (lion,ada*)",
    )
    group.addoption(
        "--gb-slowdown", type=float, default=0.0, metavar="FRACTION",
        help="test-only: every timed training step does FRACTION more work (0.15: 15%%), to prove the regression gate fails",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "quick: part of the quick subset (--gb-quick)")
    config.addinivalue_line("markers", "gated: a per-step benchmark, held to the baseline by scripts/bench_regression.sh compare")
    _load_plugins(config)
    threads = config.getoption("--gb-threads")
    if threads < 1:
        raise pytest.UsageError(f"invalid --gb-threads {threads}: must be >= 1")
    try:
        check_device(config.getoption("--gb-device"))
    except ValueError as error:
        raise pytest.UsageError(f"--gb-device: {error}") from None
    torch.set_num_threads(threads)
    keep_freed_memory()  # as a run has it (gradbench.run.allocator)
    rounds = config.getoption("--gb-rounds")
    if rounds is not None and rounds < 1:
        raise pytest.UsageError(f"invalid --gb-rounds {rounds}: must be >= 1")
    device = torch.device(config.getoption("--gb-device"))
    if config.getoption("--gb-clock") == "cpu" and device.type != "cpu":
        raise pytest.UsageError(f"--gb-clock cpu measures this thread, not {device.type} kernels; use --gb-clock wall")
    if config.getoption("--gb-clock") == "cpu" and threads > 1:
        raise pytest.UsageError(f"--gb-clock cpu measures this thread, not the other {threads - 1} torch thread(s); use --gb-clock wall or --gb-threads 1")
    _set_benchmark_timer(config)
    slowdown = config.getoption("--gb-slowdown")
    if not 0 <= slowdown <= 10:
        raise pytest.UsageError(f"invalid --gb-slowdown {slowdown}: must be a fraction between 0 and 10 (0.15: 15% more work)")
    if slowdown:
        _slow_down_steps(slowdown, _TIMERS[clock_of(config)])


def _load_plugins(config: pytest.Config) -> None:
    """Entry points, then --gb-plugin, before collection: test_step.py parametrizes over the
    registries when it is imported."""
    try:
        load_entry_points()
        load_plugins(config.getoption("--gb-plugin"))
    except PluginError as error:
        raise pytest.UsageError(str(error)) from None


def clock_of(config: pytest.Config) -> str:
    """--gb-clock, else cpu on the CPU with one torch thread and wall otherwise."""
    single_thread_cpu = torch.device(config.getoption("--gb-device")).type == "cpu" and config.getoption("--gb-threads") == 1
    return config.getoption("--gb-clock") or ("cpu" if single_thread_cpu else "wall")


def _set_benchmark_timer(config: pytest.Config) -> None:
    """Give pytest-benchmark the clock of --gb-clock. This runs before pytest-benchmark's own
    pytest_configure (marked trylast), which reads the option into its session."""
    given = config.getoption("benchmark_timer")
    if given != _DEFAULT_TIMER or any(arg.startswith("--benchmark-timer") for arg in config.invocation_params.args):
        raise pytest.UsageError(f"--benchmark-timer {given}: set the clock with --gb-clock, one of: {', '.join(CLOCKS)}")
    config.option.benchmark_timer = str(NameWrapper(_TIMERS[clock_of(config)]))


def _slow_down_steps(fraction: float, timer: Callable[[], float]) -> None:
    """Test-only: after each timed step, spin on the benchmark's own clock for ``fraction`` of
    the time the step took, so every step costs ``1 + fraction`` times as much."""
    step = TimedStep.__call__

    def slower_step(self: TimedStep, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        start = timer()
        step(self, inputs, targets)
        deadline = timer() + fraction * (timer() - start)
        while timer() < deadline:  # busy: on the cpu clock only work done counts
            pass

    TimedStep.__call__ = slower_step  # type: ignore[method-assign]


def _chosen_optimizers(config: pytest.Config) -> set[str]:
    """--gb-optimizers as registry names. The default leaves out the optional extras'
    catalogue (more than a hundred optimizers, hours of benchmarks on a CPU)."""
    which = config.getoption("--gb-optimizers")
    if which == "builtin":
        return {name for name, spec in OPTIMIZERS.items() if spec.extra is None}
    if which == "all":
        return {name for name, spec in OPTIMIZERS.items() if spec.installed and not spec.limitation}
    chosen: set[str] = set()
    for pattern in filter(None, (part.strip() for part in which.split(","))):
        found = OPTIMIZERS.names(pattern)
        if not found:
            raise pytest.UsageError(f"--gb-optimizers: no registered optimizer matches {pattern!r}; 'gradbench list optimizers' shows them")
        chosen.update(found)
    return chosen


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = _chosen_optimizers(config)

    def wanted(item: pytest.Item) -> bool:
        params = getattr(getattr(item, "callspec", None), "params", {})
        optimizer = params.get("optimizer")
        if optimizer is None:
            return True
        return parse_spec(optimizer)[0] in chosen

    selected = [item for item in items if wanted(item)]
    if config.getoption("--gb-quick"):
        selected = [item for item in selected if item.get_closest_marker("quick")]
    config.hook.pytest_deselected(items=[item for item in items if item not in selected])
    items[:] = selected


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Store what the timings depend on: torch, CUDA and cuDNN versions, device, threads, dtype."""
    machine_info.update(_machine_info(config))


def _machine_info(config: pytest.Config) -> dict[str, Any]:
    info = machine_info(torch.device(config.getoption("--gb-device")))
    # A baseline on another clock warns on compare; the allocator's settings move CPU step times.
    info["gradbench_bench"] = {"clock": clock_of(config), "malloc": keep_freed_memory() or "default"}
    return info


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
def gb_clock(request: pytest.FixtureRequest) -> str:
    """The clock of interleaved comparisons (``clock_of``)."""
    return clock_of(request.config)


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
