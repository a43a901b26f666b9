"""The training step made ready for pytest-benchmark, and the runner-overhead comparison.

pytest-benchmark times with the host clock and never synchronises the device. On CUDA an
unsynchronised step returns as soon as its kernels are queued, so it looks many times faster
than it is. ``TimedStep`` ends every timed call with ``torch.cuda.synchronize()``, so the time
reported is the time until the step's work is done on the device; drawing the batch and reading
back the monitor's buffer happen in the untimed ``setup``. Building the model, moving the data,
warm-up and any ``torch.compile`` compilation happen before timing starts.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from gradbench.axes.schedules import CONSTANT
from gradbench.grid.cell import Cell
from gradbench.run.environment import environment
from gradbench.run.result import RunResult
from gradbench.run.train import Session, StepLoop, evaluate, prepare

__all__ = ["TimedStep", "rounds_for", "run_benchmark", "compare_runner_to_handwritten", "interleaved_times", "phase_median", "overhead_ratios", "machine_info", "CLOCKS"]

# wall: time.perf_counter around a synchronised block (what a user waits for). cpu: this
# thread's CPU time (time.thread_time), blind to other processes taking turns on a shared
# machine; meaningful on the CPU device only, where the step runs on this thread.
CLOCKS = ("wall", "cpu")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TimedStep:
    """One cell's training step as a pytest-benchmark target: ``pedantic(step, setup=step.setup)``.

    Attributes:
        session: The prepared cell (``train.prepare``).
        synchronize: End each call with a device synchronisation (keep true except to show
            what goes wrong without it).
    """

    session: Session
    synchronize: bool = True

    def setup(self) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
        """Untimed: read back a full monitor buffer, draw the next batch."""
        if self.session.monitor.flush_due:
            self.session.monitor.flush()
        return self.session.batches.next(), {}

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.session.step(inputs, targets)
        if self.synchronize:
            _synchronize(self.session.device)

    def run(self, steps: int) -> None:
        """Untimed steps: warm-up, compilation."""
        for _ in range(steps):
            args, _ = self.setup()
            self(*args)
        _synchronize(self.session.device)

    def estimate_seconds(self, steps: int = 5) -> float:
        """Median time of a few synchronised steps, to choose how many rounds to time."""
        durations = []
        for _ in range(steps):
            args, _ = self.setup()
            start = time.perf_counter()
            self(*args)
            _synchronize(self.session.device)
            durations.append(time.perf_counter() - start)
        return statistics.median(durations)

    def extra_info(self) -> dict[str, Any]:
        cell = self.session.cell
        return {
            "cell": cell.config(),
            "cell_key": cell.key,
            "label": cell.label,
            "compiled": self.session.model is not self.session.task.model,
            "precision": cell.precision,
            "synchronized": self.synchronize,
        }


def rounds_for(step_seconds: float, max_time: float, min_rounds: int, max_rounds: int = 10_000) -> int:
    """How many one-step rounds fit in ``max_time`` seconds, at least ``min_rounds``."""
    if step_seconds <= 0:
        return max_rounds
    return max(min_rounds, min(max_rounds, int(max_time / step_seconds)))


def run_benchmark(
    benchmark: Any,
    cell: Cell,
    *,
    max_time: float = 1.0,
    min_rounds: int = 5,
    warmup_steps: int = 10,
    compile_model: bool = False,
    synchronize: bool = True,
) -> TimedStep:
    """Time one training step of ``cell`` with pytest-benchmark's ``benchmark`` fixture.

    Each round is one step; the number of rounds fills ``max_time`` (at least ``min_rounds``).
    With ``--benchmark-disable`` the step runs once, untimed, as a smoke test.
    """
    step = TimedStep(prepare(cell, compile_model=compile_model), synchronize=synchronize)
    benchmark.extra_info.update(step.extra_info())
    if getattr(benchmark, "disabled", False):
        benchmark.pedantic(step, setup=step.setup, rounds=1)
        return step
    step.run(warmup_steps + (3 if compile_model or cell.compile else 0))
    rounds = rounds_for(step.estimate_seconds(), max_time, min_rounds)
    benchmark.pedantic(step, setup=step.setup, rounds=rounds, warmup_rounds=1)
    return step


def _handwritten_loop(session: Session, eval_every: int | None) -> Callable[[int], None]:
    """The minimal PyTorch loop a user would write: batch, zero_grad, forward, backward, step;
    with ``eval_every``, the runner's evaluation every ``eval_every`` steps as well."""
    model, loss_fn, optimizer, batches, data = session.task.model, session.task.loss_fn, session.optimizer, session.batches, session.task.data
    done = 0

    def run(steps: int) -> None:
        nonlocal done
        for _ in range(steps):
            inputs, targets = batches.next()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            done += 1
            if eval_every and done % eval_every == 0:
                evaluate(model, data, loss_fn, done, 0.0)

    return run


def _runner_loop(session: Session) -> Callable[[int], None]:
    """gradbench's runner loop itself (``train.StepLoop``, what ``run_cell`` runs): the timed step
    (wall and CPU clocks), the scheduler, the read-back at its cadence and at the end of each
    call, and the evaluations at the session's ``eval_every``; the run never ends (no last step
    in sight)."""
    result = RunResult(session.cell, "running")
    loop = StepLoop(session, result)

    def run(steps: int) -> None:
        if not loop.run(loop.done + 1, loop.done + steps):
            raise RuntimeError(f"the runner's copy of {session.cell.label} diverged ({result.nonfinite}): nothing to compare")
        # What the comparison needs is the time; what the run keeps would grow round by round.
        result.step_times.clear()
        result.step_cpu_times.clear()
        result.evaluations.clear()

    return run


def compare_runner_to_handwritten(cell: Cell, *, steps: int = 200, rounds: int = 15, clock: str = "wall", eval_every: int | None = None) -> dict[str, Any]:
    """Time gradbench's runner and a hand-written loop on the same model, data and optimizer,
    interleaved round by round so that machine noise hits both alike.

    Each loop has its own copy of the model, data and optimizer, from the same seed. A second
    hand-written copy gives the A/A ratio: what two identical loops differ by on this machine,
    the noise floor below which the runner's ratio means nothing. Each round runs ``steps``
    steps of each loop. Returns the median seconds per step, the ratio runner / hand-written
    with the quartiles of its per-round values, and the A/A ratio. ``clock`` as in
    ``interleaved_times`` (``cpu``: this thread's CPU time, blind to other processes). With
    ``eval_every`` (the cell's own, or any) both loops evaluate on the full training and test
    sets every ``eval_every`` steps, as a run does; without, only steps are compared.
    """
    # What the runner would do that the hand-written loop does not is not a cost of the runner.
    extras = {"schedule": cell.schedule != CONSTANT, "jacobian_every": cell.jacobian_every != 0}
    if any(extras.values()):
        named = ", ".join(f"{name}={getattr(cell, name)!r}" for name, extra in extras.items() if extra)
        raise ValueError(f"compare_runner_to_handwritten times the plain step: the hand-written loop has no scheduler or Jacobians; got {named} (give schedule 'constant', jacobian_every 0)")
    # The hand-written copies get an inert monitor: prepare() hooks the monitor into the
    # optimizer for detailed records, and those hooks would run inside the hand-written loop.
    bare = replace(cell, record_every=0, detail_every=0)
    # The runner's run never reaches its last step, and evaluates only every eval_every steps.
    endless = replace(cell, steps=sys.maxsize, eval_every=eval_every or sys.maxsize)
    sessions = {"runner": prepare(endless), "handwritten": prepare(bare), "handwritten_again": prepare(bare)}
    loops = {"runner": _runner_loop(sessions["runner"])}
    for name in ("handwritten", "handwritten_again"):
        loops[name] = _handwritten_loop(sessions[name], eval_every)
    for run in loops.values():  # warm-up, untimed
        run(10)
    device = sessions["runner"].device
    times = interleaved_times(loops, steps=steps, rounds=rounds, device=device, clock=clock)
    ratios = overhead_ratios(times, {"runner": "handwritten", "handwritten_again": "handwritten"})
    return {
        "runner_step_s": ratios["runner"]["step_s"],
        "handwritten_step_s": ratios["runner"]["reference_step_s"],
        "ratio": ratios["runner"]["ratio"],
        "ratio_q1": ratios["runner"]["round_ratio_q1"],
        "ratio_q3": ratios["runner"]["round_ratio_q3"],
        "aa_ratio": ratios["handwritten_again"]["ratio"],
        "rounds": rounds,
        "steps": steps,
        "clock": clock,
        "eval_every": eval_every,
    }


def interleaved_times(
    loops: dict[str, Callable[[int], None]],
    *,
    steps: int,
    rounds: int,
    device: torch.device,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Seconds per step of each loop in each round, the loops interleaved round by round.

    Each round runs ``steps`` steps of every loop, in an order shuffled afresh each round (from
    a fixed seed, so a run is repeatable): no loop always runs first, on a warmer cache, nor
    always after the same neighbour, whose leftovers (a read-back's freed tensors, a polluted
    cache, or the same code warm) it would pay or profit from every round. Rotating the order
    was not enough: each loop then always followed the same one, and the plain loop's identical
    copy, always right behind it, read 0.985 of it on the 8x64 MLP over 1000 rounds (0.996
    shuffled). Machine noise spreads over all of them alike.

    Args:
        loops: Name -> ``run(steps)``; each owns its model, optimizer and data.
        steps, rounds: Steps per block; blocks per loop.
        device: Synchronised before and after each block.
        clock: ``"wall"`` or ``"cpu"`` (see ``CLOCKS``).

    Raises:
        ValueError: for an unknown clock, or ``cpu`` on a device other than the CPU.
    """
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; choose from: {', '.join(CLOCKS)}")
    if clock == "cpu" and device.type != "cpu":
        raise ValueError(f"clock 'cpu' measures this thread, not {device.type} kernels; use clock 'wall'")
    timer = time.thread_time if clock == "cpu" else time.perf_counter
    names = list(loops)
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    for _ in range(rounds):
        for name in order.sample(names, len(names)):
            _synchronize(device)
            start = timer()
            loops[name](steps)
            _synchronize(device)
            times[name].append((timer() - start) / steps)
    return times


def phase_median(times: list[float], period: int = 1) -> float:
    """The median over rounds, taken separately for each phase (round index mod ``period``)
    and averaged over the phases.

    A loop that does something costly once every ``period`` blocks (a detailed record every 10
    blocks of 10 steps) has one expensive round in ``period``; a plain median would ignore it,
    a mean would let one noisy round weigh as much as the rest. With ``period`` 1, the median.

    Raises:
        ValueError: if some phase has no round.
    """
    if len(times) < period:
        raise ValueError(f"{len(times)} rounds do not cover a period of {period}: give at least {period}")
    return statistics.fmean(statistics.median(times[phase::period]) for phase in range(period))


def overhead_ratios(times: dict[str, list[float]], pairs: dict[str, str], period: int = 1) -> dict[str, dict[str, Any]]:
    """For each ``variant: reference`` pair, the ratio of their median seconds per step
    (``phase_median`` with ``period``), with the quartiles of the per-round ratios (how much
    the rounds disagree)."""
    result = {}
    for variant, reference in pairs.items():
        per_round = sorted(v / r for v, r in zip(times[variant], times[reference]))
        quartiles = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else [per_round[0]] * 3
        step, reference_step = phase_median(times[variant], period), phase_median(times[reference], period)
        result[variant] = {
            "reference": reference,
            "ratio": step / reference_step,
            "round_ratio_q1": quartiles[0],
            "round_ratio_q3": quartiles[2],
            "step_s": step,
            "reference_step_s": reference_step,
        }
    return result


def machine_info(device: torch.device) -> dict[str, Any]:
    """What pytest-benchmark should store about the machine: versions, device, threads, dtype."""
    return {"gradbench": environment(device)}
