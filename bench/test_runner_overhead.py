"""gradbench's runner against a minimal hand-written PyTorch loop: same model, data and optimizer.

The loops run interleaved, round after round, so machine noise hits them alike; the ratio of
their median times per step is the runner's overhead, beside an A/A ratio (the hand-written
loop against a copy of itself: the noise floor). Without records the runner adds its step
timer (wall and CPU clocks) and the loss buffer; at the default cadence it also computes the
statistics (whose own cost is measured in detail by test_health_overhead.py). "with
evaluations": both loops also evaluate on the full training and test sets every 100 steps (the
default suite's cadence: 2000 steps, an evaluation every twentieth), as a run does.

Models: the default suite's own cell (``mnist1d_mlp[depth=8,width=64]``, sigmoid, standard
init, SGD: a 0.5 ms step, where fixed per-step costs weigh most) and the 20-layer 256-wide MLP.
"""

from __future__ import annotations

import pytest

from gradbench.run.benchmark import compare_runner_to_handwritten

DEFAULT_SUITE_CELL = {"tasks": "mnist1d_mlp[depth=8,width=64]", "activations": "sigmoid", "inits": "standard"}
WIDE = {"tasks": "mnist1d_mlp[depth=20,width=256]"}
EVAL_EVERY = 100


@pytest.mark.parametrize(
    "model, record_every, evaluations",
    [
        pytest.param("8x64", "default", True, marks=pytest.mark.quick, id="8x64-default-cadence-with-evaluations"),
        pytest.param("8x64", "default", False, id="8x64-default-cadence"),
        pytest.param("8x64", 0, False, id="8x64-no-records"),
        pytest.param("20x256", 0, False, id="20x256-no-records"),
        pytest.param("20x256", "default", False, id="20x256-default-cadence"),
        pytest.param("20x256", 1, False, id="20x256-norms-every-step"),
    ],
)
def test_runner_overhead(benchmark, make_cell, record_ratio, model, record_every, evaluations, request, gb_clock):
    cadence = {} if record_every == "default" else {"record_every": record_every, "detail_every": 0}
    cell = make_cell(**(DEFAULT_SUITE_CELL if model == "8x64" else WIDE), optimizers="sgd", **cadence)
    disabled = getattr(benchmark, "disabled", False)
    # 100 steps a round: each round holds the same records (at the default cadence, ten
    # gradient records and one detailed record) and, with evaluations, one evaluation, so the
    # median compares like with like.
    quick_rounds = 4 if request.config.getoption("--gb-quick") else 10  # few rounds: the quick subset stays short
    steps, rounds = (3, 1) if disabled else (EVAL_EVERY, request.config.getoption("--gb-rounds") or quick_rounds)
    eval_every = (3 if disabled else EVAL_EVERY) if evaluations else None
    benchmark.group = f"runner overhead | {model} | sgd"
    result = benchmark.pedantic(compare_runner_to_handwritten, args=(cell,), kwargs={"steps": steps, "rounds": rounds, "clock": gb_clock, "eval_every": eval_every}, rounds=1)
    benchmark.extra_info.update({"cell": cell.config(), **result})
    label = f"{model} sgd, record_every={cell.record_every}, detail_every={cell.detail_every}" + (f", evaluations every {eval_every}" if evaluations else "")
    record_ratio(label, result)
    assert result["ratio"] > 0
