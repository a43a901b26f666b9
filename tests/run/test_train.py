"""The runner: results, determinism, convergence to a known optimum, diverged and failed runs."""

from __future__ import annotations

import math

import pytest
import torch

from gradbench.grid import Cell, expand, parse_suite
from gradbench.run import READBACK_STEPS, RunResult, StepLoop, prepare, run_cell
from gradbench.tasks.datasets import linreg_optimum, make_linreg


def cell(**axes) -> Cell:
    (only,) = expand(parse_suite("").with_overrides(axes))
    return only


def test_result_holds_curves_norms_and_metrics(small_mlp_task):
    result = run_cell(cell(tasks=[small_mlp_task], steps=[60], eval_every=20))
    assert result.status == "done", result.error
    history = result.history
    assert history.loss_steps == list(range(1, 61))
    assert history.grad_steps == [1, 11, 21, 31, 41, 51]  # record_every 10 by default
    assert history.layer_names == ["layers.0", "layers.2", "layers.4", "layers.6"]
    assert all(len(row) == 4 and all(n > 0 for n in row) for row in history.layer_grad_norms)
    # Details (weight norms, update ratios through the runner's optimizer, activations) every 100: step 1.
    assert len(history.layer_weight_norms[0]) == 4 and all(n > 0 for n in history.layer_weight_norms[0])
    assert [row is not None for row in history.layer_weight_norms] == [True, False, False, False, False, False]
    assert [row is not None for row in history.layer_update_ratios] == [True, False, False, False, False, False]
    assert all(0 < ratio < 1 for ratio in history.layer_update_ratios[0])
    assert history.activation_steps == [1]
    assert [site.name for site in history.activation_sites] == ["layers.1", "layers.3", "layers.5"]
    assert [e.step for e in result.evaluations] == [0, 20, 40, 60]
    assert len(result.step_times) == 60 and all(t > 0 for t in result.step_times)
    assert result.num_params == [40 * 32 + 32, 32 * 32 + 32, 32 * 32 + 32, 32 * 10 + 10]
    metrics = result.metrics()
    assert metrics["steps_run"] == 60
    assert metrics["final_test_accuracy"] == result.evaluations[-1].test_accuracy
    assert 0 < metrics["grad_ratio_first_last"] < 100
    assert result.env["threads"] == 1 and result.env["torch"] == torch.__version__
    assert result.env["device_name"]


def test_the_step_loop_run_in_pieces_trains_what_one_run_trains(small_mlp_task):
    # The runner-overhead benchmark runs StepLoop a round at a time: each call must go on where
    # the last stopped, reading back at its end without changing what is trained or recorded.
    the_cell = cell(tasks=[small_mlp_task], steps=[30], eval_every=10)
    whole = run_cell(the_cell)
    session = prepare(the_cell)
    result = RunResult(the_cell, "running")
    loop = StepLoop(session, result)
    for first, last in [(1, 7), (8, 19), (20, 30)]:
        assert loop.run(first, last)
        assert len(result.step_times) == len(result.step_cpu_times) == last  # read back at each call's end
    history = session.monitor.history()
    assert history.losses == whole.history.losses and history.grad_steps == whole.history.grad_steps
    assert history.layer_grad_norms == whole.history.layer_grad_norms
    assert [e.step for e in result.evaluations] == [10, 20, 30]
    with pytest.raises(ValueError, match=r"StepLoop.run\(30, 31\): the next step is 31"):
        loop.run(30, 31)  # a step run twice
    assert [e.test_loss for e in result.evaluations] == [e.test_loss for e in whole.evaluations[1:]]


def test_threads_are_set_and_recorded(small_mlp_task):
    previous = torch.get_num_threads()
    try:
        result = run_cell(cell(tasks=[small_mlp_task], steps=[2], threads=2))
        assert result.env["threads"] == 2
    finally:
        torch.set_num_threads(previous)


def test_same_seed_gives_identical_runs_on_cpu(small_mlp_task):
    first = run_cell(cell(tasks=[small_mlp_task], steps=[40], seeds=[3]))
    second = run_cell(cell(tasks=[small_mlp_task], steps=[40], seeds=[3]))
    other = run_cell(cell(tasks=[small_mlp_task], steps=[40], seeds=[4]))
    assert first.history.losses == second.history.losses  # bit for bit, not approximately
    assert first.history.layer_grad_norms == second.history.layer_grad_norms
    assert [e.test_loss for e in first.evaluations] == [e.test_loss for e in second.evaluations]
    assert first.history.losses != other.history.losses


def test_gd_converges_to_the_linreg_closed_form():
    result = run_cell(cell(tasks=["linreg"], optimizers=["gd"], lrs=[0.2], steps=[600], eval_every=100))
    assert result.status == "done", result.error
    _, _, optimum_train_mse = linreg_optimum(make_linreg())
    final_train_mse = result.evaluations[-1].train_loss
    assert final_train_mse == pytest.approx(optimum_train_mse, rel=1e-3)
    assert result.metrics()["steps_to_target"] is not None


def test_gd_parameters_match_the_closed_form():
    """Not only the loss: the learned weights are the least-squares solution."""
    from gradbench.run.train import _build  # the same construction run_cell uses

    the_cell = cell(tasks=["linreg"], optimizers=["gd"], lrs=[0.2], steps=[1])
    torch.manual_seed(0)
    task = _build(the_cell, torch.device("cpu"))
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.2)
    for _ in range(1500):
        optimizer.zero_grad()
        task.loss_fn(task.model(task.data.x_train), task.data.y_train).backward()
        optimizer.step()
    weight, bias, _ = linreg_optimum(task.data)
    linear = task.model[0]
    torch.testing.assert_close(linear.weight.detach().double().T, weight, atol=1e-4, rtol=0)
    torch.testing.assert_close(linear.bias.detach().double(), bias, atol=1e-4, rtol=0)


def test_huge_learning_rate_is_stored_as_diverged_with_its_first_step(small_mlp_task):
    result = run_cell(cell(tasks=[small_mlp_task], optimizers=["sgd"], lrs=[1e3], steps=[200]))
    assert result.status == "diverged"
    nonfinite = result.nonfinite
    assert nonfinite is not None and 1 <= nonfinite.step < READBACK_STEPS
    assert nonfinite.quantity in ("loss", "gradient")
    if nonfinite.quantity == "gradient":
        assert nonfinite.layer in result.history.layer_names
    # Records stop at the first non-finite step; everything before it is finite.
    assert result.history.loss_steps[-1] == nonfinite.step
    assert all(math.isfinite(loss) for loss in result.history.losses[:-1])
    assert len(result.step_times) == len(result.step_cpu_times) == nonfinite.step
    assert result.metrics()["final_train_loss"] is None


def test_an_exception_inside_a_run_is_a_failed_result():
    from gradbench.tasks import TASKS, Task, register_task

    def explode(config):
        raise RuntimeError("CUDA out of memory (simulated)")

    register_task(Task("exploding", "raises while building", explode, knobs={}))
    try:
        result = run_cell(cell(tasks=["exploding"], steps=[5]))
    finally:
        TASKS.unregister("exploding")
    assert result.status == "failed"
    assert result.error.startswith("RuntimeError: CUDA out of memory (simulated)")
    assert result.finished_at and result.metrics()["final_train_loss"] is None


def test_steps_to_target_is_the_first_evaluation_at_target(small_mlp_task):
    result = run_cell(cell(tasks=[small_mlp_task.replace("]", ",target=0.0]")], steps=[20], eval_every=10))
    assert result.metrics()["steps_to_target"] == 0  # accuracy >= 0 holds at initialisation
    assert result.metrics()["time_to_target_s"] == 0.0


def test_lbfgs_reaches_the_linreg_closed_form_full_batch_and_lowers_the_loss_on_mini_batches():
    """A closure optimizer trains through run_cell, one recorded step and one timed step per
    optimizer step however often it evaluates the loss."""
    _, _, optimum_train_mse = linreg_optimum(make_linreg())
    full = run_cell(cell(tasks=["linreg"], optimizers=["lbfgs"], batch_sizes=["full"], steps=[5], eval_every=1, record_every=1))
    assert full.status == "done", full.error
    assert full.evaluations[-1].train_loss == pytest.approx(optimum_train_mse, rel=1e-3)
    assert len(full.step_times) == len(full.history.losses) == len(full.history.grad_steps) == 5
    mini = run_cell(cell(tasks=["linreg"], optimizers=["lbfgs"], steps=[40], eval_every=10))
    assert mini.status == "done", mini.error
    assert mini.evaluations[-1].train_loss < 0.1 * mini.evaluations[0].train_loss
    assert mini.cell.batch_size == 32 and full.cell.batch_size is None


def test_a_closure_optimizers_update_ratio_is_measured_on_its_own_step():
    """The monitor's step() runs inside L-BFGS's step (in the first evaluation), after the
    optimizer's pre-step hook: the weights are copied there, so the ratio is this step's."""
    from gradbench.axes.optimizers import build_optimizer, resolve_hyperparameters
    from gradbench.monitor import GradientMonitor
    from gradbench.run.train import _build, closure_step

    the_cell = cell(tasks=["linreg"], optimizers=["lbfgs"], steps=[1])
    torch.manual_seed(0)
    task = _build(the_cell, torch.device("cpu"))
    optimizer = build_optimizer("lbfgs", task.model.parameters(), resolve_hyperparameters("lbfgs", {"max_iter": 3}))
    monitor = GradientMonitor(task.model, every=1, detail_every=2, optimizer=optimizer)
    expected = {}
    for step in range(1, 7):
        index = torch.arange(32) + 32 * step
        before = [p.detach().clone() for p in task.model.parameters()]
        closure_step(task.model, task.loss_fn, optimizer, monitor, task.data.x_train[index], task.data.y_train[index])
        after = [p.detach() for p in task.model.parameters()]
        # One layer: the weight and the bias together.
        change = math.sqrt(sum(float((a - b).square().sum()) for a, b in zip(after, before)))
        expected[step] = change / math.sqrt(sum(float(b.square().sum()) for b in before))
    history = monitor.history()
    ratios = {step: ratio for step, ratio in zip(history.grad_steps, history.layer_update_ratios) if ratio is not None}
    assert sorted(ratios) == [1, 3, 5]  # the detailed steps (step 1, then every 2)
    for step, (ratio,) in ratios.items():
        assert ratio == pytest.approx(expected[step], rel=1e-5), step
