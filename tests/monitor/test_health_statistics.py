"""The monitor's per-layer statistics against independent computations, on small models of
every shape (Sequential, BatchNorm, GELU/SiLU, not a Sequential), with and without clipping;
and what it must never do: change training, or read back inside a step."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradbench.monitor import GradientMonitor, NonFinite

torch.set_num_threads(1)


class Net(nn.Module):
    """Not a Sequential: a BatchNorm, GELU and SiLU, a skip connection, a parameter of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.stem = nn.Linear(6, 8)
        self.norm = nn.BatchNorm1d(8)
        self.gelu = nn.GELU()
        self.block = nn.ModuleDict({"fc": nn.Linear(8, 8), "act": nn.SiLU()})
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.gelu(self.norm(self.stem(x)))
        h = h + self.scale * self.block["act"](self.block["fc"](h))
        return self.head(h)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


MODELS = {"mlp": _mlp, "net": Net}


def _batch(step: int):
    generator = torch.Generator().manual_seed(step)
    return torch.randn(16, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def _user_loop(model: nn.Module, optimizer: torch.optim.Optimizer, monitor: GradientMonitor, batches) -> None:
    """The user's loop with the monitor in it: one ``monitor.step(loss)`` between backward and step."""
    for x, y in batches:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(loss)
        optimizer.step()


def _layer_norms(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[float]:
    """sqrt(sum ||t||^2) over each module's own parameters, in float64, by name."""
    norms = []
    for name, module in model.named_modules():
        own = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if own:
            prefix = f"{name}." if name else ""
            norms.append(math.sqrt(sum(float(tensors[prefix + n].double().square().sum()) for n in own)))
    return norms


def _train(model_name: str, steps: int, *, monitor_arguments: dict | None, optimizer_name: str = "sgd", clip_reference: tuple[str, float] | None = None):
    """Train a fresh model; return it, the monitor's history and independent references per step."""
    torch.manual_seed(0)
    model = MODELS[model_name]()
    optimizers = {
        "sgd": lambda: torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        "adam": lambda: torch.optim.Adam(model.parameters(), lr=1e-2),
    }
    optimizer = optimizers[optimizer_name]()
    monitor = GradientMonitor(model, optimizer=optimizer, **monitor_arguments) if monitor_arguments is not None else None
    references = []
    for step in range(1, steps + 1):
        x, y = _batch(step)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        named = dict(model.named_parameters())
        before = {n: p.detach().clone() for n, p in named.items()}
        grads = {n: p.grad.clone() for n, p in named.items()}
        if clip_reference is not None and clip_reference[0] == "norm":
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_reference[1])
        elif clip_reference is not None:
            torch.nn.utils.clip_grad_value_(model.parameters(), clip_reference[1])
        if monitor is not None:
            monitor.step(loss)
        clipped = {n: p.grad.clone() for n, p in named.items()}
        optimizer.step()
        update = {n: named[n].detach() - before[n] for n in named}
        references.append({"grads": _layer_norms(model, grads), "clipped": _layer_norms(model, clipped), "weights": _layer_norms(model, before), "updates": _layer_norms(model, update)})
    return model, (monitor.history() if monitor else None), references


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_norms_weights_and_update_ratios_equal_independent_computations(model_name, optimizer_name):
    _, history, references = _train(model_name, 6, monitor_arguments={"every": 1, "detail_every": 2}, optimizer_name=optimizer_name)
    assert history.grad_steps == list(range(1, 7))
    for index, reference in enumerate(references):
        assert history.layer_grad_norms[index] == pytest.approx(reference["grads"], rel=1e-5)
        assert history.layer_grad_norms_after[index] == history.layer_grad_norms[index]  # no clipping
        ratios = history.layer_update_ratios[index]
        if index % 2 == 0:  # steps 1, 3, 5: detailed
            assert history.layer_weight_norms[index] == pytest.approx(reference["weights"], rel=1e-5)
            expected = [update / weight for update, weight in zip(reference["updates"], reference["weights"])]
            assert ratios == pytest.approx(expected, rel=1e-4)
        else:
            assert ratios is None and history.layer_weight_norms[index] is None
        assert history.clip_fired[index] is None
    assert history.nonfinite is None


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("clip", [("norm", 0.05), ("norm", 100.0), ("value", 0.01), ("value", 100.0)], ids=lambda c: f"{c[0]}:{c[1]}")
def test_norms_after_clipping_and_clip_firing(model_name, clip):
    kind, threshold = clip
    _, history, references = _train(model_name, 4, monitor_arguments={"every": 1, "clip": f"{kind}:{threshold}"})
    _, _, torch_clipped = _train(model_name, 4, monitor_arguments=None, clip_reference=clip)
    for index, reference in enumerate(references):
        assert history.layer_grad_norms[index] == pytest.approx(reference["grads"], rel=1e-5)
        # After clipping: the norms of the gradients the optimizer received, which are torch's own.
        assert history.layer_grad_norms_after[index] == pytest.approx(reference["clipped"], rel=1e-4)
        assert history.layer_grad_norms_after[index] == pytest.approx(torch_clipped[index]["clipped"], rel=1e-4)
        total_after = math.sqrt(sum(n * n for n in reference["clipped"]))
        assert history.total_norm_after[index] == pytest.approx(total_after, rel=1e-4)
    assert history.clip_fired == [threshold < 1.0] * 4  # 0.05 and 0.01 always bite, 100 never
    assert history.clip_fired_fraction == (1.0 if threshold < 1.0 else 0.0)


def test_value_clipping_fires_only_beyond_the_threshold():
    model = nn.Linear(2, 1, bias=False)
    monitor = GradientMonitor(model, every=1, clip="value:0.5")
    for grad in ([0.5, -0.5], [0.25, -0.5000001], [0.0, 0.75]):
        model.weight.grad = torch.tensor([grad])
        monitor.step()
    assert monitor.history().clip_fired == [False, True, True]


@pytest.mark.parametrize("model_name", list(MODELS))
def test_the_monitor_does_not_change_training(model_name):
    plain, _, _ = _train(model_name, 8, monitor_arguments=None)
    monitored, history, _ = _train(model_name, 8, monitor_arguments={"every": 1, "detail_every": 1})
    for a, b in zip(plain.state_dict().values(), monitored.state_dict().values()):  # BatchNorm's running statistics too
        assert torch.equal(a, b)
    assert history.activation_steps == list(range(1, 9)) and len(history.activation_sites) >= 2


def test_a_weight_made_non_finite_by_the_update_is_reported_as_weight():
    class Poisoning(torch.optim.Optimizer):
        """Plain gradient descent whose third update writes an Inf into layer 2's weight."""

        def __init__(self, params):
            super().__init__(params, {"lr": 0.01})
            self.updates = 0

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-group["lr"])
            self.updates += 1
            if self.updates == 3:
                model[2].weight[0, 0] = math.inf

    torch.manual_seed(0)
    model = _mlp()
    optimizer = Poisoning(model.parameters())
    monitor = GradientMonitor(model, every=1, detail_every=1, optimizer=optimizer)
    for step in range(1, 3 + 1):
        x, y = _batch(step)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(loss)
        optimizer.step()
    history = monitor.history()
    assert history.nonfinite == NonFinite(3, "weight", "2")
    assert math.isfinite(history.losses[-1]) and all(math.isfinite(n) for n in history.layer_grad_norms[-1])
    assert history.layer_update_ratios[-1][1] == math.inf


def test_update_ratios_need_the_optimizer_step_and_a_flush_in_between_drops_it():
    torch.manual_seed(0)
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=1, detail_every=1, optimizer=optimizer)
    for flush_before_update in (False, True, False):
        model(torch.randn(4, 6)).sum().backward()
        monitor.step()
        if flush_before_update:
            monitor.flush()
        optimizer.step()
        optimizer.zero_grad()
    ratios = monitor.history().layer_update_ratios
    assert [row is not None for row in ratios] == [True, False, True]
    monitor.close()
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


FORBIDDEN = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero")


@pytest.mark.parametrize("clip", ["none", "norm:0.01", "value:0.01"])
def test_nothing_is_read_back_inside_a_training_step_with_every_statistic(monkeypatch, clip):
    """On the CPU a read-back cannot be timed, so check that the step (forward with activation
    hooks, backward, monitor, optimizer with the monitor's hooks) calls none of the host
    conversions that would synchronise on an accelerator."""
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=1, detail_every=1, optimizer=optimizer, clip=clip, buffer_steps=10)
    batches = [_batch(step) for step in range(4)]

    def forbidden(*args, **kwargs):
        raise AssertionError("a host read-back inside the training step")

    for method in FORBIDDEN:
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    _user_loop(model, optimizer, monitor, batches)
    monkeypatch.undo()
    history = monitor.history()
    assert history.grad_steps == [1, 2, 3, 4] and history.activation_steps == [1, 2, 3, 4]
    assert all(row is not None for row in history.layer_update_ratios)


def test_the_monitor_reads_back_only_at_its_cadence(monkeypatch):
    """Every read-back is a ``tolist`` or a ``numpy``: count them, and the steps at which they
    happen."""
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=2, detail_every=4, optimizer=optimizer, buffer_steps=5)
    reads: list[int] = []

    def counting(original):
        def read(self, *args, **kwargs):
            reads.append(monitor.steps)
            return original(self, *args, **kwargs)

        return read

    for method in ("tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, counting(getattr(torch.Tensor, method)))
    for step in range(1, 21):
        x, y = _batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        monitor.step()
        optimizer.step()
        if monitor.flush_due:
            monitor.flush()
    monkeypatch.undo()
    # Four flushes of five steps; each reads the buffer once, plus the activation buffer once
    # when the five steps hold a detailed step (1, 5, 9, 13, 17: all four do).
    assert reads == [5, 5, 10, 10, 15, 15, 20, 20]
    assert monitor.history().activation_steps == [1, 5, 9, 13, 17]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("clip", ["none", "norm:0.01", "value:0.01"])
def test_no_synchronisation_inside_a_cuda_training_step(clip):
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, every=1, detail_every=1, optimizer=optimizer, clip=clip, buffer_steps=10)
    batches = [tuple(t.to(device) for t in _batch(step)) for step in range(4)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _user_loop(model, optimizer, monitor, batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    history = monitor.history()
    assert history.grad_steps == [1, 2, 3, 4] and history.activation_steps == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"every": 10, "detail_every": 15}, r"invalid detail_every=15: must be 0 or a multiple of every=10"),
        ({"every": 0, "detail_every": 5}, r"invalid detail_every=5: must be 0 or a multiple of every=0"),
        ({"detail_every": -1}, r"invalid detail_every=-1"),
        ({"optimizer": "sgd"}, r"invalid optimizer='sgd'"),
        ({"weights": False, "optimizer": True}, r"optimizer is given for update ratios, which need weights=True"),
    ],
)
def test_invalid_statistics_arguments(kwargs, pattern):
    model = _mlp()
    if kwargs.get("optimizer") is True:
        kwargs = {**kwargs, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    with pytest.raises(ValueError, match=pattern):
        GradientMonitor(model, **kwargs)


def test_defaults_record_gradients_every_10_steps_and_details_every_100():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    monitor = GradientMonitor(model, optimizer=optimizer)
    assert (monitor.every, monitor.detail_every) == (10, 100)
    for step in range(1, 202):
        x, y = _batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        monitor.step()
        optimizer.step()
    history = monitor.history()
    assert history.grad_steps == list(range(1, 202, 10))
    assert history.activation_steps == [1, 101, 201]
    assert [step for step, ratios in zip(history.grad_steps, history.layer_update_ratios) if ratios] == [1, 101, 201]
    assert [step for step, weights in zip(history.grad_steps, history.layer_weight_norms) if weights] == [1, 101, 201]
