"""gradbench's runner against a minimal hand-written PyTorch loop: same model, data and optimizer.

The two loops run interleaved, round after round, so machine noise hits both alike; the ratio
of their median times per step is the runner's overhead. Without gradient records the runner
adds its step timer and the loss buffer; with per-layer norms every step it also computes them
(whose own cost is the gradient monitor's concern).
"""

from __future__ import annotations

import pytest

from gradbench.benchmark import compare_runner_to_handwritten

TASK = "mnist1d_mlp[depth=20,width=256]"


@pytest.mark.parametrize(
    "record_every",
    [pytest.param(0, marks=pytest.mark.quick, id="no-records"), pytest.param(1, id="norms-every-step")],
)
def test_runner_overhead(benchmark, make_cell, record_ratio, record_every):
    cell = make_cell(tasks=TASK, optimizers="sgd", record_every=record_every)
    disabled = getattr(benchmark, "disabled", False)
    steps, rounds = (3, 1) if disabled else (50, 15)
    benchmark.group = "runner overhead | mlp | sgd"
    result = benchmark.pedantic(compare_runner_to_handwritten, args=(cell,), kwargs={"steps": steps, "rounds": rounds}, rounds=1)
    benchmark.extra_info.update({"cell": cell.config(), **result})
    record_ratio(f"mlp sgd, record_every={record_every}", result)
    assert result["ratio"] > 0
