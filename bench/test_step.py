"""The training step (forward, backward, monitor and clip, optimizer step), timed per group.

Generated from the registries: every optimizer, every activation and every clipping mode on
each representative task, plus optimizer implementations (for-loop, foreach, fused),
``torch.compile`` and precisions: every optimizer under bf16 autocast (and fp16 with its loss
scaler on CUDA) beside fp32, and eager beside compiled, on the deep MLP. Each benchmark's ``extra_info`` holds its full cell configuration. All are
marked ``gated``: the regression gate (scripts/bench_regression.sh) holds their medians to a
saved baseline.
"""

from __future__ import annotations

import pytest

from gradbench.axes import list_activations, list_optimizers, parse_spec
from gradbench.run.benchmark import run_benchmark
from gradbench.tasks import TASKS as REGISTERED_TASKS

# One step per round, many rounds: the benchmarks scripts/bench_regression.sh compare gates on.
pytestmark = pytest.mark.gated

# Representative tasks, all offline: name in the report -> task spec.
TASKS = {
    "mlp": "mnist1d_mlp[depth=20,width=256]",  # the deep MLP: 20 hidden layers of 256
    "cnn": "mnist1d_cnn",  # the MNIST-1D paper's 1-D CNN
    "rnn": "mnist1d_rnn",  # a vanilla tanh RNN reading MNIST-1D as a 40-step sequence
}
# The activation axis applies to the tasks built from a registered activation.
ACTIVATION_TASKS = [name for name, spec in TASKS.items() if REGISTERED_TASKS.get(parse_spec(spec)[0]).uses_activation]
QUICK = {"optimizer": ("sgd", "adam"), "activation": ("relu",), "clip": ("norm:1",)}


def _params(values, quick):
    return [pytest.param(value, marks=pytest.mark.quick) if value in quick else value for value in values]


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("optimizer", _params(list_optimizers(), QUICK["optimizer"]))
def test_optimizer(benchmark, make_cell, timing, task, optimizer):
    benchmark.group = f"optimizer | {task}"
    run_benchmark(benchmark, make_cell(tasks=TASKS[task], optimizers=optimizer), **timing)


@pytest.mark.parametrize("task", ACTIVATION_TASKS)
@pytest.mark.parametrize("activation", _params(list_activations(), QUICK["activation"]))
def test_activation(benchmark, make_cell, timing, task, activation):
    benchmark.group = f"activation | {task} | sgd"
    run_benchmark(benchmark, make_cell(tasks=TASKS[task], activations=activation), **timing)


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("clip", _params(["none", "norm:1", "value:1"], QUICK["clip"]))
def test_clip(benchmark, make_cell, timing, task, clip):
    benchmark.group = f"clip | {task} | sgd"
    run_benchmark(benchmark, make_cell(tasks=TASKS[task], clips=clip), **timing)


# torch.optim's implementations: one kernel per tensor, one fused multi-tensor kernel per
# operation (foreach), or a single fused kernel (fused; CPU support since torch 2.4).
IMPLEMENTATIONS = {"for-loop": "foreach=false", "foreach": "foreach=true", "fused": "fused=true"}


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd[momentum=0.9]"])
@pytest.mark.parametrize("implementation", [pytest.param(i, marks=pytest.mark.quick) if i == "foreach" else i for i in IMPLEMENTATIONS])
def test_implementation(benchmark, make_cell, timing, optimizer, implementation):
    name, _, params = optimizer.partition("[")
    spec = f"{name}[{params.rstrip(']') + ',' if params else ''}{IMPLEMENTATIONS[implementation]}]"
    benchmark.group = f"implementation | mlp | {optimizer}"
    run_benchmark(benchmark, make_cell(tasks=TASKS["mlp"], optimizers=spec, record_every=1), **timing)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_compile(benchmark, make_cell, timing, compiled):
    """torch.compile of the model (the monitor and optimizer stay eager); compilation is warm-up."""
    benchmark.group = "torch.compile | mlp | adam"
    run_benchmark(benchmark, make_cell(tasks=TASKS["mlp"], optimizers="adam"), compile_model=compiled, **timing)


# What mixed precision buys each optimizer: fp32 beside bf16 autocast (CPU and CUDA) and fp16 with
# its loss scaler (CUDA only: the grid refuses fp16 on the CPU). One group per optimizer, so
# pytest-benchmark's table puts the precisions of one optimizer side by side.
PRECISIONS = ("fp32", "bf16", "fp16")


# The quick subset keeps one: adam under bf16.
PRECISION_CASES = [
    pytest.param(optimizer, precision, marks=pytest.mark.quick) if (optimizer, precision) == ("adam", "bf16") else (optimizer, precision)
    for optimizer in list_optimizers()
    for precision in PRECISIONS
]


@pytest.mark.parametrize("optimizer, precision", PRECISION_CASES)
def test_precision(benchmark, make_cell, timing, gb_device, optimizer, precision):
    if precision == "fp16" and gb_device.type != "cuda":
        pytest.skip("fp16 runs on CUDA only (gradbench.axes.precision)")
    if precision == "fp16" and optimizer == "lbfgs":
        pytest.skip("a loss scaler cannot drive a closure optimizer")
    benchmark.group = f"precision | mlp | {optimizer}"
    run_benchmark(benchmark, make_cell(tasks=TASKS["mlp"], optimizers=optimizer, precision=precision), **timing)


# What compilation buys each optimizer: the model's forward and backward compiled (the
# optimizer step stays eager, as in a run; gradbench.run.train.prepare), compilation as warm-up.
# Not in the quick subset: each compiled benchmark compiles for seconds on a CPU.
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("optimizer", list_optimizers())
def test_compiled_optimizer(benchmark, make_cell, timing, optimizer, compiled):
    benchmark.group = f"torch.compile | mlp | {optimizer}"
    run_benchmark(benchmark, make_cell(tasks=TASKS["mlp"], optimizers=optimizer, compile=compiled), **timing)
