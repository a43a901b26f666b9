"""What an optimizer costs in memory: its state's bytes, counted against independent counts."""

from __future__ import annotations

import pytest
import torch

from gradbench.grid import Cell, expand, parse_suite
from gradbench.run import prepare, run_cell
from gradbench.run.memory import optimizer_state_bytes

TASK = "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


def cell(optimizer: str) -> Cell:
    (only,) = expand(parse_suite("").with_overrides({"tasks": [TASK], "optimizers": [optimizer], "steps": [3]}))
    return only


def _parameters(optimizer: str) -> tuple[int, int]:
    """The model's parameter elements and parameter tensors, from a model built apart."""
    parameters = [p for p in prepare(cell(optimizer)).model.parameters() if p.requires_grad]
    return sum(p.numel() for p in parameters), len(parameters)


def test_adam_state_is_two_float32_moments_per_parameter_plus_one_step_counter_per_tensor():
    """Adam keeps exp_avg and exp_avg_sq (float32, like the parameter) and, since torch 1.12, a
    0-d float32 ``step`` tensor per parameter tensor, which counts as a tensor."""
    elements, tensors = _parameters("adam")
    result = run_cell(cell("adam"))
    assert result.status == "done", result.error
    assert result.optimizer_state_bytes == 2 * elements * 4 + tensors * 4
    assert result.metrics()["optimizer_state_bytes"] == result.optimizer_state_bytes
    assert result.peak_memory_bytes is None and result.metrics()["peak_memory_bytes"] is None  # the CPU has no peak counter


@pytest.mark.parametrize(("optimizer", "buffers"), [("sgd", 0), ("sgd[momentum=0.9]", 1)])
def test_sgd_keeps_nothing_without_momentum_and_one_buffer_with_it(optimizer, buffers):
    elements, _ = _parameters(optimizer)
    result = run_cell(cell(optimizer))
    assert result.status == "done", result.error
    assert result.optimizer_state_bytes == buffers * elements * 4


def _stepped(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> torch.optim.Optimizer:
    parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    return optimizer


def test_a_storage_shared_by_several_state_tensors_counts_once():
    parameters = [torch.nn.Parameter(torch.zeros(10)), torch.nn.Parameter(torch.zeros(6))]
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    flat = torch.zeros(16, dtype=torch.float64)  # one buffer that the per-parameter state slices
    optimizer.state[parameters[0]]["buffer"] = flat[:10]
    optimizer.state[parameters[1]]["buffer"] = flat[10:]
    optimizer.state[parameters[1]]["same"] = flat
    assert optimizer_state_bytes(optimizer) == 16 * 8


def test_tensors_nested_in_lists_count_and_python_numbers_do_not():
    """L-BFGS keeps lists of tensors (its history) and Python ints (``n_iter``)."""
    parameter = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    optimizer.state[parameter].update({"history": [torch.zeros(4), (torch.zeros(2, dtype=torch.float16),)], "n_iter": 7, "name": "x", "none": None})
    assert optimizer_state_bytes(optimizer) == 4 * 4 + 2 * 2


def test_the_parameters_and_their_gradients_are_not_the_optimizers_memory():
    parameter = torch.nn.Parameter(torch.zeros(5))
    optimizer = _stepped(torch.optim.SGD([parameter], lr=0.1, momentum=0.9), parameter)
    optimizer.state[parameter]["weights"] = parameter  # some optimizers keep references
    optimizer.state[parameter]["gradient"] = parameter.grad
    optimizer.state[parameter]["view"] = parameter.detach()[:2]
    assert optimizer_state_bytes(optimizer) == 5 * 4  # the momentum buffer only


def test_lbfgs_state_counts_its_history_at_its_largest():
    """The runner keeps the larger of the counts after the first and the last step: L-BFGS's
    history grows after the first."""
    spec = "lbfgs[max_iter=1]"  # one iteration per step: one more history pair per step after the first
    result = run_cell(cell(spec))
    assert result.status == "done", result.error
    elements, _ = _parameters(spec)
    # After the first step: the direction d and the previous flat gradient; after the third, 2 pairs more.
    assert result.optimizer_state_bytes >= (2 + 2 * 2) * elements * 4
