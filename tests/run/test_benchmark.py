"""gradbench.run.benchmark and bench/: the timed step, the regression workflow, CUDA synchronisation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gradbench.grid import expand, parse_suite
from gradbench.run import prepare
from gradbench.run.benchmark import TimedStep, compare_runner_to_handwritten, interleaved_times, overhead_ratios, phase_median, rounds_for

ROOT = Path(__file__).resolve().parents[2]
SMALL = "mnist1d_mlp[depth=2,width=16,num_samples=500]"


def cell(**axes):
    (only,) = expand(parse_suite("").with_overrides({"tasks": [SMALL], "steps": [1], **axes}))
    return only


def test_rounds_fill_the_time_budget():
    assert rounds_for(0.01, max_time=1.0, min_rounds=5) == 100
    assert rounds_for(2.0, max_time=1.0, min_rounds=5) == 5
    assert rounds_for(1e-9, max_time=1.0, min_rounds=5, max_rounds=1000) == 1000


def test_setup_reads_back_a_full_monitor_buffer_outside_the_timed_call():
    step = TimedStep(prepare(cell()))
    monitor = step.session.monitor
    for _ in range(monitor.buffer_steps):
        args, kwargs = step.setup()
        step(*args, **kwargs)
    assert monitor.flush_due  # the timed calls never flushed
    step.setup()
    assert not monitor.flush_due and len(monitor.history().losses) == monitor.buffer_steps


def test_extra_info_holds_the_full_cell():
    the_cell = cell(optimizers=["adam"])
    info = TimedStep(prepare(the_cell)).extra_info()
    assert info["cell"] == the_cell.config() and info["cell_key"] == the_cell.key
    assert info["compiled"] is False and info["synchronized"] is True


def test_runner_comparison_reports_both_times_and_their_ratio():
    result = compare_runner_to_handwritten(cell(record_every=0), steps=5, rounds=2)
    assert result["runner_step_s"] > 0 and result["handwritten_step_s"] > 0
    assert result["ratio"] == pytest.approx(result["runner_step_s"] / result["handwritten_step_s"])
    assert result["ratio_q1"] <= result["ratio_q3"] and result["aa_ratio"] > 0


def test_the_runner_side_of_the_comparison_is_the_runners_own_loop(monkeypatch):
    # Not a copy of it that could drift: every runner step goes through StepLoop.run, with
    # the evaluations at the cadence asked for.
    from gradbench.run import train

    calls = []
    run, evaluate = train.StepLoop.run, train.Session.evaluate

    def counted_run(self, first, last):
        calls.append((first, last))
        return run(self, first, last)

    evaluated = []
    monkeypatch.setattr(train.StepLoop, "run", counted_run)
    monkeypatch.setattr(train.Session, "evaluate", lambda self, step, seconds: evaluated.append(step) or evaluate(self, step, seconds))
    compare_runner_to_handwritten(cell(), steps=6, rounds=2, eval_every=4)
    assert calls == [(1, 10), (11, 16), (17, 22)]  # the warm-up, then one call a round
    assert evaluated == [4, 8, 12, 16, 20]


@pytest.mark.parametrize("axes, named", [({"schedules": ["cosine"]}, "schedule='cosine'"), ({"jacobian_every": 5}, "jacobian_every=5")])
def test_the_comparison_refuses_what_the_hand_written_loop_would_not_do(axes, named):
    with pytest.raises(ValueError, match=f"hand-written loop has no scheduler or Jacobians; got {named}"):
        compare_runner_to_handwritten(cell(**axes), steps=2, rounds=1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: shows why the timed call synchronises")
def test_unsynchronised_cuda_steps_look_faster_than_they_are():
    the_cell = cell(tasks=["mnist1d_mlp[depth=20,width=2048]"], device="cuda", batch_sizes=[1024], record_every=0)

    def host_time(synchronize: bool) -> float:
        step = TimedStep(prepare(the_cell), synchronize=synchronize)
        step.run(5)
        start = time.perf_counter()
        for _ in range(20):
            args, _ = step.setup()
            step(*args)
        elapsed = time.perf_counter() - start  # what pytest-benchmark's host clock would see
        torch.cuda.synchronize()
        return elapsed

    assert host_time(synchronize=False) < 0.7 * host_time(synchronize=True)


def _pytest(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600, env={**os.environ, **(env or {})},
    )


def test_the_quick_benchmark_subset_still_runs():
    """CI runs every quick benchmark once, untimed, so bench/ cannot rot."""
    process = _pytest("bench/", "--gb-quick", "--benchmark-disable", "-q")
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert " passed" in process.stdout and "deselected" in process.stdout


SLOWED_BENCHMARK = textwrap.dedent(
    '''
    import os, time
    import torch
    from gradbench.run.benchmark import run_benchmark
    from gradbench.grid import expand, parse_suite

    torch.set_num_threads(1)

    def test_step(benchmark):
        (cell,) = expand(parse_suite("").with_overrides({"tasks": ["%s"], "steps": [1]}))
        if os.environ.get("SLOW_STEP"):  # make every training step 10 ms slower
            from gradbench.run import train
            original = train.train_step
            def slowed(*args, **kwargs):
                time.sleep(0.01)
                return original(*args, **kwargs)
            train.train_step = slowed
        run_benchmark(benchmark, cell, max_time=0.3, min_rounds=20)
    '''
    % SMALL
)


def test_a_saved_baseline_passes_its_compare_and_a_slower_step_fails_it(tmp_path):
    (tmp_path / "test_slowed.py").write_text(SLOWED_BENCHMARK)
    storage = f"file://{tmp_path / 'storage'}"
    common = ["test_slowed.py", "-q", f"--benchmark-storage={storage}"]
    saved = _pytest(*common, "--benchmark-save=baseline", cwd=tmp_path)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    same = _pytest(*common, "--benchmark-compare=0001", "--benchmark-compare-fail=median:100%", cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    slowed = _pytest(*common, "--benchmark-compare=0001", "--benchmark-compare-fail=median:5%", env={"SLOW_STEP": "1"}, cwd=tmp_path)
    assert slowed.returncode != 0
    assert "Performance has regressed" in slowed.stdout + slowed.stderr


def test_interleaved_rounds_shuffle_the_order_repeatably_and_time_each_block():
    def record(calls):
        def loop(name):
            def run(steps):
                calls.extend([name] * steps)

            return run

        return {name: loop(name) for name in "abcd"}

    calls: list[str] = []
    times = interleaved_times(record(calls), steps=2, rounds=40, device=torch.device("cpu"), clock="cpu")
    assert {name: len(values) for name, values in times.items()} == {name: 40 for name in "abcd"}
    blocks = calls[::2]
    rounds = [blocks[i : i + 4] for i in range(0, len(blocks), 4)]
    assert all(sorted(one) == list("abcd") for one in rounds)  # each loop once a round, whole blocks
    # No loop always runs after the same neighbour (rotating the order did that), nor always first.
    predecessors = {name: {one[one.index(name) - 1] for one in rounds if one.index(name) > 0} for name in "abcd"}
    assert all(len(found) == 3 for found in predecessors.values()), predecessors
    assert len({one[0] for one in rounds}) == 4
    again: list[str] = []
    interleaved_times(record(again), steps=2, rounds=40, device=torch.device("cpu"), clock="cpu")
    assert again == calls  # seeded: a benchmark run is repeatable
    loops = record([])
    with pytest.raises(ValueError, match="unknown clock 'sun'; choose from: wall, cpu"):
        interleaved_times(loops, steps=1, rounds=1, device=torch.device("cpu"), clock="sun")
    with pytest.raises(ValueError, match="clock 'cpu' measures this thread, not cuda kernels"):
        interleaved_times(loops, steps=1, rounds=1, device=torch.device("cuda"), clock="cpu")


def test_phase_median_weighs_in_the_costly_round_of_each_period():
    # One round in four is slow (a detailed record): a plain median would miss it.
    times = [1.0, 1.0, 1.0, 5.0] * 5
    assert phase_median(times, 4) == pytest.approx((1.0 + 1.0 + 1.0 + 5.0) / 4)
    assert phase_median(times) == 1.0
    # An outlier in one round of a phase does not move that phase's median.
    assert phase_median([1.0, 1.0, 100.0, 1.0, 1.0, 1.0], 2) == 1.0
    with pytest.raises(ValueError, match="3 rounds do not cover a period of 4"):
        phase_median([1.0, 2.0, 3.0], 4)


def test_overhead_ratios_compare_each_variant_with_its_reference():
    times = {"plain": [2.0, 2.0, 2.0], "monitored": [2.2, 2.1, 2.4], "twice": [2.0, 2.2, 1.8]}
    ratios = overhead_ratios(times, {"monitored": "plain", "twice": "plain"})
    assert ratios["monitored"]["ratio"] == pytest.approx(2.2 / 2.0)
    assert ratios["monitored"]["reference"] == "plain" and ratios["monitored"]["step_s"] == pytest.approx(2.2)
    assert ratios["twice"]["round_ratio_q1"] <= 1.0 <= ratios["twice"]["round_ratio_q3"]


SIGN_SGD = textwrap.dedent(
    '''
    import torch
    from gradbench.axes.optimizers import register_optimizer

    class SignSGD(torch.optim.Optimizer):
        """Sign SGD: step by lr times the sign of the gradient."""

        def __init__(self, params, lr=0.01):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad.sign(), alpha=-group["lr"])

    register_optimizer("%s", SignSGD, needs_closure=False)
    '''
)


def test_plugin_optimizers_join_the_step_benchmarks_from_a_file_and_from_an_entry_point(tmp_path):
    """``--gb-plugin FILE`` and an installed distribution's ``gradbench.plugins`` entry point
    (a dist-info on PYTHONPATH) each add an optimizer that is benchmarked beside AdamW."""
    (tmp_path / "zoo_bench_file.py").write_text(SIGN_SGD % "zoo_bench_file")
    site = tmp_path / "site"
    (site / "zoo_bench_dist-0.1.dist-info").mkdir(parents=True)
    (site / "zoo_bench_dist-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo_bench_dist\nVersion: 0.1\n")
    (site / "zoo_bench_dist-0.1.dist-info" / "entry_points.txt").write_text("[gradbench.plugins]\nzoo = zoo_bench_entry\n")
    (site / "zoo_bench_entry.py").write_text(SIGN_SGD % "zoo_bench_entry")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    process = _pytest(
        "bench/test_step.py", "--gb-plugin", str(tmp_path / "zoo_bench_file.py"), "--benchmark-disable", "-q",
        "-k", "test_optimizer and mlp and (adamw or zoo_bench_file or zoo_bench_entry)", env=env,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert "3 passed" in process.stdout
    broken = _pytest("bench/test_step.py", "--gb-plugin", str(tmp_path / "missing.py"), "--collect-only", "-q")
    assert broken.returncode == 4 and f"plugin file '{tmp_path / 'missing.py'}' does not exist" in broken.stderr


def test_the_optional_catalogue_joins_the_optimizer_benchmarks_only_when_asked():
    """More than a hundred catalogue optimizers would make bench/ take hours on a CPU: the
    default is torch.optim's and plugins'; --gb-optimizers names others or takes all."""

    def collected(*args: str) -> list[str]:
        process = _pytest("bench/test_step.py", "--collect-only", "-q", "-k", "test_optimizer and mlp", *args)
        assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
        return [line for line in process.stdout.splitlines() if line.startswith("bench/")]

    default = collected()
    assert "bench/test_step.py::test_optimizer[adam-mlp]" in default and not any("lion" in line for line in default)
    assert collected("--gb-optimizers", "lion,adam") == ["bench/test_step.py::test_optimizer[adam-mlp]", "bench/test_step.py::test_optimizer[lion-mlp]"]
    assert len(collected("--gb-optimizers", "all")) > 100
    broken = _pytest("bench/test_step.py", "--collect-only", "-q", "--gb-optimizers", "adam,nosuch")
    assert broken.returncode == 4 and "no registered optimizer matches 'nosuch'" in broken.stderr
