"""gradbench's runner against a minimal hand-written PyTorch loop: same model, data and optimizer.

The loops run interleaved, round after round, so machine noise hits them alike; the ratio of
their median times per step is the runner's overhead, beside an A/A ratio (the hand-written
loop against a copy of itself: the noise floor). Without records the runner adds its step
timer and the loss buffer; at the default cadence and with per-layer norms every step it also
computes the statistics (whose own cost is measured in detail by test_health_overhead.py).
"""

from __future__ import annotations

import pytest

from gradbench.run.benchmark import compare_runner_to_handwritten

TASK = "mnist1d_mlp[depth=20,width=256]"


@pytest.mark.parametrize(
    "record_every",
    [
        pytest.param(0, marks=pytest.mark.quick, id="no-records"),
        pytest.param("default", id="default-cadence"),
        pytest.param(1, id="norms-every-step"),
    ],
)
def test_runner_overhead(benchmark, make_cell, record_ratio, record_every, request, gb_clock):
    cadence = {} if record_every == "default" else {"record_every": record_every, "detail_every": 0}
    cell = make_cell(tasks=TASK, optimizers="sgd", **cadence)
    disabled = getattr(benchmark, "disabled", False)
    # 100 steps a round: each round holds the same records (at the default cadence, ten
    # gradient records and one detailed record), so the median compares like with like.
    quick_rounds = 4 if request.config.getoption("--gb-quick") else 10  # the quick subset stays under a minute
    steps, rounds = (3, 1) if disabled else (100, request.config.getoption("--gb-rounds") or quick_rounds)
    benchmark.group = "runner overhead | mlp | sgd"
    result = benchmark.pedantic(compare_runner_to_handwritten, args=(cell,), kwargs={"steps": steps, "rounds": rounds, "clock": gb_clock}, rounds=1)
    benchmark.extra_info.update({"cell": cell.config(), **result})
    record_ratio(f"mlp sgd, record_every={cell.record_every}, detail_every={cell.detail_every}", result)
    assert result["ratio"] > 0
