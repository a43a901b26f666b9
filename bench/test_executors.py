"""How a CPU-bound grid scales with the process pool's workers (one torch thread each), and how
fast the pool's workers start, for each start method (``forkserver``, the default, and
``spawn``, what the pool used before).

Every sweep runs in a fresh Python process, as a ``gradbench run`` does: the fork server is
started (and imports torch) once per process, so a sweep in this pytest process would find it
already running after the first and look faster than a user's command ever is.

Start-up: 2-worker pools on a 2-cell grid of a few steps (5 per start method, 3 with
--gb-quick, alternating methods), each reporting the time from the pool's start to its first
ready worker and to both (a worker is ready once it has imported what it needs and its
plugins), then a second pool in the same process (the fork server already up) and the start-up
of each of its workers.

Scaling: the same grid runs into a fresh store with 1 worker, then with 2, alternately
(``--gb-rounds`` pairs; 1 with --gb-quick, else 2), so machine noise hits both alike. The time
is the whole sweep on the wall clock, worker start-up (import torch, load the data) included:
what a user waits for. The summary prints the ratio of the median times; on a machine with two
free cores the goal is >= 1.6x.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

# One sweep in a fresh process: argv = suite text, workers, start method, pools (run one after
# another in this process); prints one JSON line per pool.
_SWEEP = """
import json, sys, tempfile, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from gradbench.grid import expand, parse_suite
from gradbench.store import Store
from gradbench.sweep import ProcessExecutor, run_sweep

if __name__ == "__main__":
    suite, workers, start_method, pools = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    cells = expand(parse_suite(suite))
    for _ in range(pools):
        with tempfile.TemporaryDirectory() as folder:
            executor = ProcessExecutor(workers=workers, start_method=start_method)
            started = time.perf_counter()
            with Store.open(Path(folder) / "bench.db", create=True) as store:
                summary = run_sweep(cells, store, executor=executor, progress=False)
            seconds = time.perf_counter() - started
        assert summary.statuses["done"] == len(cells), summary
        print(json.dumps({"sweep_s": seconds, "first_ready_s": executor.first_ready_s, "startup_s": executor.startup_s}))
"""

METHODS = ("forkserver", "spawn")
_GRID = 'tasks = ["mnist1d_mlp[depth=8,width=128]"]\nsteps = {steps}\nseeds = {seeds}\noptimizers = ["sgd"]'


def _sweeps(suite: str, workers: int, start_method: str, pools: int = 1) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", _SWEEP, suite, str(workers), start_method, str(pools)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _start_up(starts: int) -> dict[str, dict[str, float]]:
    """Median start-up of 2-worker pools per start method, over ``starts`` fresh processes."""
    suite = _GRID.format(steps=5, seeds=[0, 1])
    samples: dict[str, dict[str, list[float]]] = {method: {"first": [], "all": [], "again_all": [], "again_worker": []} for method in METHODS}
    for _ in range(starts):
        for method in METHODS:  # alternately, so machine noise hits both alike
            first, again = _sweeps(suite, 2, method, pools=2)
            samples[method]["first"].append(first["first_ready_s"])
            samples[method]["all"].append(max(first["startup_s"]))  # the slower worker: the pool is up
            samples[method]["again_all"].append(max(again["startup_s"]))
            samples[method]["again_worker"] += again["startup_s"]
    return {method: {name: statistics.median(values) for name, values in by.items()} for method, by in samples.items()}


@pytest.mark.quick
def test_process_pool_scaling(benchmark, request, gb_device, record_scaling):
    if gb_device.type != "cpu":
        pytest.skip("CPU scaling: on CUDA the pool has one worker per GPU")
    quick = request.config.getoption("--gb-quick")
    steps, seeds = (500, 4) if quick else (2000, 8)
    suite = _GRID.format(steps=steps, seeds=list(range(seeds)))
    pairs = request.config.getoption("--gb-rounds") or (1 if quick else 2)
    starts = 3 if quick else 5

    def measure() -> dict[str, dict]:
        start_up = _start_up(starts)
        times: dict[str, dict[int, list[float]]] = {method: {1: [], 2: []} for method in METHODS}
        for _ in range(pairs):
            for method in METHODS:
                for workers in (1, 2):
                    (sweep,) = _sweeps(suite, workers, method)
                    times[method][workers].append(sweep["sweep_s"])
        return {
            method: {
                "one_worker_s": statistics.median(times[method][1]), "two_workers_s": statistics.median(times[method][2]),
                "speedup": statistics.median(times[method][1]) / statistics.median(times[method][2]),
                "pairs": pairs, "cells": seeds, "steps": steps, "start_up": start_up[method], "starts": starts,
            }
            for method in METHODS
        }

    benchmark.group = "executor scaling | process pool"
    results = benchmark.pedantic(measure, rounds=1)
    benchmark.extra_info.update(results)
    for method, result in results.items():
        s = result["start_up"]
        result["startup"] = (
            f"a 2-worker pool in a fresh process: first worker ready {s['first']:.2f} s after the pool started, both {s['all']:.2f} s; "
            f"a second pool in that process: both ready {s['again_all']:.2f} s, each worker {s['again_worker']:.2f} s (medians of {starts} pools)"
        )
        record_scaling(f"{seeds} cells x {steps} steps of mnist1d_mlp[depth=8,width=128], sgd, {method} workers", result)
