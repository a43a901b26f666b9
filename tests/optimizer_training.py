"""The small regression problem and plain training loop on which every registered optimizer is
trained by the tests (tests/axes/test_optimizers.py for torch.optim's, test_optimizer_catalog.py
for other packages'): an 8-16-1 tanh MLP, mini-batches of 16 from 128 examples."""

from __future__ import annotations

import torch
from torch import nn

from gradbench.axes.optimizers import build_optimizer, get_optimizer

STEPS = 200
BATCH = 16


def regression_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(128, 8, generator=generator)
    true_weights = torch.randn(8, 1, generator=generator) * 0.5
    targets = inputs @ true_weights + 0.01 * torch.randn(128, 1, generator=generator)
    return inputs, targets


def train(name: str, hyperparameters: dict, steps: int = STEPS, seed: int = 0) -> tuple[float, float]:
    inputs, targets = regression_problem(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    spec = get_optimizer(name)
    optimizer = build_optimizer(name, model, hyperparameters)  # the model: Muon's split needs it
    if spec.train_eval_modes:  # Schedule-Free: train() before stepping, eval() to read the averaged weights
        optimizer.train()
    with torch.no_grad():
        initial = nn.functional.mse_loss(model(inputs), targets).item()
    full_batch = spec.full_batch
    batches = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        if full_batch:
            x, y = inputs, targets
        else:
            index = torch.randint(0, len(inputs), (BATCH,), generator=batches)
            x, y = inputs[index], targets[index]

        @torch.enable_grad()  # AliG calls it inside its no_grad step
        def closure(x=x, y=y) -> torch.Tensor:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        if get_optimizer(name).needs_closure:  # L-BFGS evaluates the loss itself, several times a step
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
    if spec.train_eval_modes:
        optimizer.eval()
    with torch.no_grad():
        final = nn.functional.mse_loss(model(inputs), targets).item()
    return initial, final
