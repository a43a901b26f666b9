"""How a CPU-bound grid scales with the process pool's workers (one torch thread each).

The same grid runs into a fresh store with 1 worker, then with 2, alternately (``--gb-rounds``
pairs; 1 with --gb-quick, else 2), so machine noise hits both alike. The time is the whole
sweep on the wall clock, worker start-up (spawn, import torch, load the data) included: what a
user waits for. The summary prints the ratio of the median times; on a machine with two free
cores the goal is >= 1.6x.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import pytest

from gradbench.grid import expand, parse_suite
from gradbench.store import Store
from gradbench.sweep import ProcessExecutor, run_sweep


def _sweep_seconds(cells, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        with Store.open(Path(folder) / "scaling.db", create=True) as store:
            summary = run_sweep(cells, store, executor=ProcessExecutor(workers=workers), progress=False)
        seconds = time.perf_counter() - started
    assert summary.statuses["done"] == len(cells)
    return seconds


@pytest.mark.quick
def test_process_pool_scaling(benchmark, request, gb_device, record_scaling):
    if gb_device.type != "cpu":
        pytest.skip("CPU scaling: on CUDA the pool has one worker per GPU")
    quick = request.config.getoption("--gb-quick")
    steps, seeds = (500, 4) if quick else (2000, 8)
    cells = expand(parse_suite(f'tasks = ["mnist1d_mlp[depth=8,width=128]"]\nsteps = {steps}\nseeds = {list(range(seeds))}\noptimizers = ["sgd"]'))
    pairs = request.config.getoption("--gb-rounds") or (1 if quick else 2)

    def measure() -> dict[str, float]:
        one, two = [], []
        for _ in range(pairs):
            one.append(_sweep_seconds(cells, 1))
            two.append(_sweep_seconds(cells, 2))
        return {"one_worker_s": statistics.median(one), "two_workers_s": statistics.median(two), "pairs": pairs, "cells": len(cells), "steps": steps}

    benchmark.group = "executor scaling | process pool"
    result = benchmark.pedantic(measure, rounds=1)
    result["speedup"] = result["one_worker_s"] / result["two_workers_s"]
    benchmark.extra_info.update(result)
    record_scaling(f"{len(cells)} cells x {steps} steps of mnist1d_mlp[depth=8,width=128], sgd", result)
