"""What each gradient-health statistic costs: the training step with and without it.

One process, one model per variant (identical copies, identical batches), the variants
interleaved round by round (``gradbench.run.benchmark.interleaved_times``); each round runs a block
of 10 steps of every variant, read-backs included (``flush()`` when due, as a training loop
would), so every block holds one gradient record. Reported: the ratio of median seconds per step
of each variant to the plain step (a hand-written loop without the monitor), and of clipping
plus statistics to clipping alone. The medians are taken per phase of the detail cadence (one
round in 10 holds the detailed record) and averaged over the phases (``phase_median``). The
ratio of the plain step to a second identical copy of itself (A/A) is the noise floor: a ratio
no further from 1 than it means nothing.

Models, all with batch 64 on random inputs, under SGD (and the 20x256 MLP under Adam too): the
default suite's own MLP (8 hidden layers of 64, ``mnist1d_mlp[depth=8,width=64]``), the 20-layer
256-wide MLP of ``mnist1d_mlp[depth=20,width=256]``, a small CNN defined here, and the GRU of
``mnist1d_gru`` (MNIST-1D read as a 40-step sequence). Besides the A/A row, each model has a
"bare _foreach_norm" row: the plain loop plus one fused norm over all gradients, the least any
per-layer gradient record can cost; the monitor's every-step record is reported against it, and
its default cadence's records against the same norm at the same steps (every 10th). On the CPU
the clock is this thread's CPU time by default (``--gb-clock cpu``): a shared machine's other
processes then add no noise of their own.

    pytest bench/test_health_overhead.py -s                 # every model and optimizer
    pytest bench/test_health_overhead.py -s --gb-quick      # MLP with SGD only, fewer rounds
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from gradbench.monitor import DEFAULT_EVERY, DETAIL_FACTOR, GradientMonitor
from gradbench.run.benchmark import interleaved_times, overhead_ratios
from gradbench.tasks.mlp import MLP
from gradbench.tasks.rnn import RecurrentNet

BATCH = 64


class SmallCNN(nn.Module):
    """A small CNN for 1x28x28 inputs, layer by layer:

    conv 1->8 (3x3, padding 1), ReLU, max-pool 2; conv 8->16 (3x3, padding 1), ReLU,
    max-pool 2; linear 16*7*7 -> 10.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP(40, 10, depth=20, width=256, activation="relu"), (40,)),
    "mlp8x64": (lambda: MLP(40, 10, depth=8, width=64, activation="sigmoid"), (40,)),
    "cnn": (SmallCNN, (1, 28, 28)),
    "gru": (lambda: RecurrentNet("gru", 1, 10, depth=1, width=64), (40, 1)),
}
OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.01),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-4),
}
# Variant -> GradientMonitor arguments (None: no monitor); "optimizer": True passes the loop's own.
NONE = {"weights": False, "detail_every": 0, "activations": False}
EVERY_STEP = {"every": 1, "detail_every": 1}
BARE_NORM = "bare _foreach_norm, every step"
BARE_NORM_EVERY = f"bare _foreach_norm, every {DEFAULT_EVERY}"
BARE_PERIOD = {BARE_NORM: 1, BARE_NORM_EVERY: DEFAULT_EVERY}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "plain (A/A)": None,
    BARE_NORM: None,  # not a monitor: the plain loop plus one fused norm of all gradients
    BARE_NORM_EVERY: None,  # ... at the default cadence's recorded steps only
    "loss only": {**NONE, "every": 0},
    "grad norms, every step": {**NONE, "every": 1},
    f"grad norms, every {DEFAULT_EVERY}": NONE,
    "grad + weight norms, every step": {**NONE, **EVERY_STEP, "weights": True},
    "grad + weight norms + update ratios, every step": {**NONE, **EVERY_STEP, "weights": True, "optimizer": True},
    "grad norms + activations, every step": {**NONE, **EVERY_STEP, "activations": True},
    f"all, defaults (grad every {DEFAULT_EVERY}, the rest every {DETAIL_FACTOR * DEFAULT_EVERY})": {"optimizer": True},
    "clip norm:1 alone": {**NONE, "every": 0, "clip": "norm:1"},
    "clip norm:1 + grad norms, every step": {**NONE, "every": 1, "clip": "norm:1"},
    f"clip norm:1 + grad norms, every {DEFAULT_EVERY}": {**NONE, "clip": "norm:1"},
}
# Each variant's reference: the plain step, but clipping with statistics against clipping alone;
# the every-step record also against the bare fused norm (a second row).
PAIRS = {name: ("clip norm:1 alone" if name.startswith("clip norm:1 +") else "plain") for name in VARIANTS if name != "plain"}
AGAINST_BARE = "grad norms, every step (vs bare _foreach_norm)"
AGAINST_BARE_EVERY = f"grad norms, every {DEFAULT_EVERY} (vs bare _foreach_norm every {DEFAULT_EVERY})"


def _loop(
    model_name: str, optimizer_name: str, monitor_arguments: dict[str, Any] | None, base: nn.Module, device: torch.device, bare_every: int = 0
) -> Callable[[int], None]:
    """A training loop on its own copy of ``base``: zero_grad, forward, backward, [monitor, or
    with ``bare_every`` one fused norm of all gradients at the steps the monitor would record
    with ``every=bare_every``], step, and the monitor's read-back when due."""
    model = copy.deepcopy(base).to(device)
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    monitor = None
    parameters = list(model.parameters())
    if monitor_arguments is not None:
        arguments = dict(monitor_arguments)
        if arguments.pop("optimizer", False):
            arguments["optimizer"] = optimizer
        monitor = GradientMonitor(model, buffer_steps=50, **arguments)
    generator = torch.Generator().manual_seed(0)
    shape = MODELS[model_name][1]
    batches = [
        (torch.randn(BATCH, *shape, generator=generator).to(device), torch.randint(0, 10, (BATCH,), generator=generator).to(device))
        for _ in range(8)
    ]
    position = [0]

    def run(steps: int) -> None:
        for _ in range(steps):
            inputs, targets = batches[position[0] % len(batches)]
            position[0] += 1
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            if bare_every and (position[0] - 1) % bare_every == 0:
                torch._foreach_norm([p.grad for p in parameters if p.grad is not None])
            if monitor is not None:
                monitor.step(loss)
            optimizer.step()
            if monitor is not None and monitor.flush_due:
                monitor.flush()

    return run


def measure(model_name: str, optimizer_name: str, *, steps: int, rounds: int, device: torch.device, clock: str) -> dict[str, Any]:
    torch.manual_seed(0)
    base = MODELS[model_name][0]()
    loops = {name: _loop(model_name, optimizer_name, arguments, base, device, bare_every=BARE_PERIOD.get(name, 0)) for name, arguments in VARIANTS.items()}
    for run in loops.values():  # warm-up, untimed: one block, so every block holds one record
        run(steps)
    times = interleaved_times(loops, steps=steps, rounds=rounds, device=device, clock=clock)
    times[AGAINST_BARE] = times["grad norms, every step"]  # timed once, compared twice
    times[AGAINST_BARE_EVERY] = times[f"grad norms, every {DEFAULT_EVERY}"]
    period = min(DETAIL_FACTOR, rounds)  # rounds in one detail period (fewer when smoke-testing)
    pairs = {**PAIRS, AGAINST_BARE: BARE_NORM, AGAINST_BARE_EVERY: BARE_NORM_EVERY}
    return {"clock": clock, "steps": steps, "rounds": rounds, "period": period, "ratios": overhead_ratios(times, pairs, period), "times": times}


@pytest.mark.parametrize(
    "model_name, optimizer_name",
    [pytest.param("mlp8x64", "sgd", marks=pytest.mark.quick), ("mlp", "sgd"), ("mlp", "adam"), ("cnn", "sgd"), ("gru", "sgd")],
)
def test_health_overhead(benchmark, record_overhead, gb_device, gb_clock, model_name, optimizer_name, request):
    disabled = getattr(benchmark, "disabled", False)
    quick = request.config.getoption("--gb-quick")
    # Blocks of DEFAULT_EVERY steps, so that each holds one record; detailed records fall in one
    # round of DETAIL_FACTOR, which phase_median weighs in. Short blocks, many rounds: on a
    # shared machine the noise drifts over seconds, and short blocks share more of it.
    rounds = request.config.getoption("--gb-rounds") or (DETAIL_FACTOR if quick else 3 * DETAIL_FACTOR)
    steps, rounds = (1, 1) if disabled else (DEFAULT_EVERY, rounds)
    benchmark.group = f"health overhead | {model_name} | {optimizer_name}"
    result = benchmark.pedantic(
        measure, args=(model_name, optimizer_name), kwargs={"steps": steps, "rounds": rounds, "device": gb_device, "clock": gb_clock}, rounds=1
    )
    benchmark.extra_info.update({"model": model_name, "optimizer": optimizer_name, "batch": BATCH, **result})
    record_overhead(f"{model_name} {optimizer_name}", result)
    assert all(entry["ratio"] > 0 for entry in result["ratios"].values())
