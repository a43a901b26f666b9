"""Runs under a precision and compiled: bf16 autocast on the CPU, fp16's loss scaler with an
injected overflow, tf32's matrix-product settings, and compiled steps against eager ones."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from gradbench.cli import main
from gradbench.grid import Cell, expand, parse_suite
from gradbench.run import run_cell
from gradbench.store import Store

# Compiled and eager losses agree to this (absolute, on cross-entropy losses near 2): the same
# float32 arithmetic, fused and reordered by inductor (measured: at most 7e-7 over 30 steps).
COMPILE_TOLERANCE = 1e-5


def cell(task: str, **settings) -> Cell:
    (only,) = expand(parse_suite("").with_overrides({"tasks": [task], **settings}))
    return only


def test_bf16_trains_under_autocast_and_stores_its_precision(small_mlp_task, tmp_path):
    plain = cell(small_mlp_task, steps=[30], optimizers=["adam"])
    bf16 = replace(plain, precision="bf16")
    fp32_result, bf16_result = run_cell(plain), run_cell(bf16)
    assert bf16_result.status == "done", bf16_result.error
    assert bf16_result.env["autocast_dtype"] == "bfloat16" and fp32_result.env["autocast_dtype"] is None
    losses, reference = bf16_result.history.losses, fp32_result.history.losses
    assert losses != reference  # the forward pass ran in bfloat16...
    assert losses[0] == pytest.approx(reference[0], rel=2e-2)  # ...to bfloat16's precision
    assert losses[-1] < losses[0]  # and learned
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(bf16_result)
        (row,) = store.runs()
        assert (row["precision"], row["compile"], row["skipped_steps"]) == ("bf16", 0, None)


def test_an_fp16_step_the_scaler_skips_is_recorded_and_the_run_stays_done(small_mlp_task, tmp_path, monkeypatch, capsys):
    """fp16 on the CPU (a hand-made cell: the grid refuses it, the runner does not), with an Inf
    written into a gradient before the third unscale_: the real GradScaler skips that step."""
    unscale = torch.amp.GradScaler.unscale_
    calls = 0

    def overflow_at_third_step(self, optimizer):
        nonlocal calls
        calls += 1
        if calls == 3:
            next(p for group in optimizer.param_groups for p in group["params"]).grad.view(-1)[0] = math.inf
        return unscale(self, optimizer)

    monkeypatch.setattr(torch.amp.GradScaler, "unscale_", overflow_at_third_step)
    fp16 = replace(cell(small_mlp_task, steps=[12], record_every=1), precision="fp16")
    result = run_cell(fp16)
    assert result.status == "done", result.error
    assert result.env["autocast_dtype"] == "float16"
    history = result.history
    assert history.skipped_steps == [3] and history.nonfinite is None
    assert history.loss_scales == [2.0**16] * 3 + [2.0**15] * 9
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(result)
        assert store.runs()[0]["skipped_steps"] == 1 and store.runs()[0]["status"] == "done"
        assert store.skipped_steps(fp16.key) == [3]
        curve = store.curve(fp16.key)
        assert [row["skipped"] for row in curve] == [0, 0, 1] + [0] * 9
        assert [row["loss_scale"] for row in curve][2:4] == [2.0**16, 2.0**15]
    assert main(["diagnose", "--db", str(tmp_path / "r.db")]) == 0
    assert "loss scaler: skipped 1 steps for non-finite scaled gradients (steps 3); not divergence" in capsys.readouterr().out
    assert main(["export", "--db", str(tmp_path / "r.db"), "--what", "steps", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [(row["step"], row["skipped"]) for row in exported][1:4] == [(2, 0), (3, 1), (4, 0)]
    assert [row["loss_scale"] for row in exported][2:4] == [2.0**16, 2.0**15]


def test_fp16_diverges_when_the_scale_collapses(small_mlp_task, monkeypatch):
    unscale = torch.amp.GradScaler.unscale_

    def always_overflow(self, optimizer):
        next(p for group in optimizer.param_groups for p in group["params"]).grad.view(-1)[0] = math.inf
        return unscale(self, optimizer)

    monkeypatch.setattr(torch.amp.GradScaler, "unscale_", always_overflow)
    result = run_cell(replace(cell(small_mlp_task, steps=[30]), precision="fp16"))
    assert result.status == "diverged"
    assert (result.nonfinite.step, result.nonfinite.quantity) == (17, "loss_scale")  # 2**16 halved 16 times is 1
    assert len(result.step_times) == 17


def test_tf32_sets_the_matmul_precision_for_the_run_only_and_every_run_records_it(small_mlp_task):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        plain = cell(small_mlp_task, steps=[5])
        tf32 = run_cell(replace(plain, precision="tf32"))  # the runner does not refuse it on the CPU
        assert tf32.status == "done", tf32.error
        assert (tf32.env["matmul_precision"], tf32.env["cuda_matmul_allow_tf32"]) == ("high", True)
        fp32 = run_cell(plain)
        assert (fp32.env["matmul_precision"], fp32.env["cuda_matmul_allow_tf32"]) == ("highest", False)  # whatever the process had
        assert torch.get_float32_matmul_precision() == "medium"  # the caller's setting back
    finally:
        torch.set_float32_matmul_precision(before)


def test_compiled_losses_equal_eager_ones_and_compilation_is_not_timed(small_mlp_task):
    eager = cell(small_mlp_task, steps=[30], optimizers=["adam"], record_every=1, detail_every=10)
    compiled = replace(eager, compile=True)
    eager_result, compiled_result = run_cell(eager), run_cell(compiled)
    assert compiled_result.status == "done", compiled_result.error
    # The warm-up that compiled trained nothing the eager run does not: same losses from step 1.
    assert compiled_result.history.losses == pytest.approx(eager_result.history.losses, abs=COMPILE_TOLERANCE)
    assert [e.test_loss for e in compiled_result.evaluations] == pytest.approx([e.test_loss for e in eager_result.evaluations], abs=COMPILE_TOLERANCE)
    assert compiled_result.compile_time_s is not None and compiled_result.compile_time_s > 0 and eager_result.compile_time_s is None
    assert len(compiled_result.step_times) == 30
    assert compiled_result.env["compiled"] == ["model"]
    # Activation statistics are off under compile; gradient, weight and update records stay.
    assert compiled_result.history.activation_steps == [] and eager_result.history.activation_steps == [1, 11, 21]
    assert compiled_result.history.grad_steps == eager_result.history.grad_steps
    assert [row is not None for row in compiled_result.history.layer_update_ratios] == [row is not None for row in eager_result.history.layer_update_ratios]


@pytest.mark.parametrize("optimizer", ["muon", "adamw_schedulefree"])
def test_the_warm_up_leaves_no_trace_in_split_or_averaging_optimizers(small_mlp_task, optimizer):
    """Muon's AdamW companion keeps its own state, Schedule-Free counts its steps in the
    parameter groups: a warm-up that cleared only the first inner state, or left the groups
    as its steps made them, would train a compiled run differently from an eager one."""
    eager = cell(small_mlp_task, steps=[8], optimizers=[optimizer], eval_every=4)
    eager_result, compiled_result = run_cell(eager), run_cell(replace(eager, compile=True))
    assert compiled_result.status == "done", compiled_result.error
    assert compiled_result.history.losses == pytest.approx(eager_result.history.losses, abs=COMPILE_TOLERANCE)
    assert [e.test_loss for e in compiled_result.evaluations] == pytest.approx([e.test_loss for e in eager_result.evaluations], abs=COMPILE_TOLERANCE)


def test_a_closure_optimizer_under_bf16_computes_its_loss_in_float32(small_mlp_task):
    """L-BFGS's forward passes run under autocast; its loss must too (float32, as for every
    other optimizer), or the line search compares losses rounded to bfloat16."""
    result = run_cell(replace(cell(small_mlp_task, steps=[3], optimizers=["lbfgs"]), precision="bf16"))
    assert result.status == "done", result.error
    losses = result.history.losses
    assert all(torch.tensor(loss).bfloat16().float().item() != loss for loss in losses), losses
