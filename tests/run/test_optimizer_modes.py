"""The runner and optimizers beyond step(): Schedule-Free's train/eval modes around every
evaluation, and optimizer classes named by import path (``package.module:Class``), in this
process and in a process-pool worker."""

from __future__ import annotations

import pytest
import torch

from gradbench.axes.optimizers import OPTIMIZERS, get_optimizer, register_optimizer, resolve_hyperparameters
from gradbench.grid import expand, parse_suite
from gradbench.run.train import evaluate, prepare, run_cell
from gradbench.store import Store
from gradbench.sweep.driver import run_sweep
from gradbench.sweep.process_pool import ProcessExecutor

torch.set_num_threads(1)


class ZeroWhenEvaluated(torch.optim.SGD):
    """SGD whose eval() swaps in all-zero weights (a stand-in for averaged ones) and whose
    train() puts the trained ones back: evaluations must see only zeros."""

    def eval(self) -> None:
        self.saved = [p.detach().clone() for group in self.param_groups for p in group["params"]]
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.zero_()

    def train(self) -> None:
        with torch.no_grad():
            for p, saved in zip((p for group in self.param_groups for p in group["params"]), getattr(self, "saved", [])):
                p.copy_(saved)
        self.saved = []


def test_evaluations_run_between_eval_and_train():
    name = "test_zero_when_evaluated"
    register_optimizer(name, ZeroWhenEvaluated, defaults={"lr": 0.05})
    try:
        assert get_optimizer(name).train_eval_modes  # found on the class
        (cell,) = expand(parse_suite(f'tasks = ["linreg"]\noptimizers = ["{name}"]\nsteps = 20\neval_every = 5\n'))
        result = run_cell(cell)
    finally:
        OPTIMIZERS.unregister(name)
    assert result.status == "done", result.error
    losses = [evaluation.train_loss for evaluation in result.evaluations]
    assert losses[0] != losses[1]  # step 0: the initial model, nothing averaged yet
    assert len(set(losses[1:])) == 1  # every later one: the all-zero weights eval() swapped in
    history = result.history
    assert history is not None and history.losses[-1] < 0.5 * history.losses[0]  # train() put the trained weights back


def test_schedulefree_evaluates_its_averaged_weights():
    pytest.importorskip("schedulefree", reason="the extra gradbench[optimizers] is not installed")
    (cell,) = expand(parse_suite('tasks = ["linreg"]\noptimizers = ["adamw_schedulefree[lr=0.05]"]\nsteps = 10\n'))
    session = prepare(cell)
    assert session.train_eval_modes
    for _ in range(10):
        session.step(*session.batches.next())
    data, loss_fn = session.task.data, session.task.loss_fn
    at_y = evaluate(session.task.model, data, loss_fn, 10, 0.0).train_loss  # where the gradients are taken
    seen = session.evaluate(10, 0.0).train_loss
    assert session.optimizer.param_groups[0]["train_mode"]  # back in train mode: the next step may run
    assert evaluate(session.task.model, data, loss_fn, 10, 0.0).train_loss == at_y
    session.optimizer.eval()
    at_x = evaluate(session.task.model, data, loss_fn, 10, 0.0).train_loss  # the averaged weights
    session.optimizer.train()
    assert seen == at_x != at_y


class KeywordsOnly(torch.optim.Optimizer):
    """Plain SGD whose constructor takes only **kwargs: no lr default to read."""

    def __init__(self, params, **kwargs):
        super().__init__(params, {"lr": kwargs.pop("lr")})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


class WithLr(KeywordsOnly):
    """The same with an lr default of its own."""

    def __init__(self, params, lr: float = 0.02):
        super().__init__(params, lr=lr)


PATH = f"{__name__}:KeywordsOnly"


def test_a_class_by_import_path_needs_no_registration():
    with_lr = f"{__name__}:WithLr"
    assert resolve_hyperparameters(with_lr) == {"lr": 0.02}
    assert get_optimizer(with_lr).source == __name__ and with_lr not in OPTIMIZERS
    assert resolve_hyperparameters(PATH, {"lr": 0.1}) == {"lr": 0.1}  # **kwargs takes --lr
    with pytest.raises(ValueError, match=rf"optimizer '{PATH}' has no default learning rate: give one, as {PATH}\[lr=...\] or --lr"):
        resolve_hyperparameters(PATH)
    with pytest.raises(ValueError, match=r"cannot import 'no_such_module:Opt'"):
        resolve_hyperparameters("no_such_module:Opt")
    with pytest.raises(ValueError, match="must be a torch.optim.Optimizer subclass"):
        resolve_hyperparameters("torch.nn:Linear")


def test_a_class_by_import_path_runs_in_a_pool_worker(tmp_path):
    """The worker imports the class from the cell's own optimizer name: no plugin to pass."""
    cells = expand(parse_suite(f'tasks = ["linreg"]\noptimizers = ["{PATH}"]\nlrs = [0.1]\nsteps = 20\n'))
    with Store.open(tmp_path / "r.db", create=True) as store:
        run_sweep(cells, store, executor=ProcessExecutor(workers=1), progress=False)
        (run,) = store.runs()
        evaluations = store.evaluations(run["key"])
    assert run["status"] == "done", run.get("error")
    assert run["optimizer"] == PATH
    assert evaluations[-1]["train_loss"] < 0.5 * evaluations[0]["train_loss"]


def test_a_closure_called_inside_no_grad_still_builds_its_graph():
    """AliG calls the closure inside its own no_grad step: the runner's closure turns grad back
    on, as L-BFGS does for its own calls."""
    pytest.importorskip("pytorch_optimizer", reason="the extra gradbench[optimizers] is not installed")
    assert get_optimizer("alig").needs_closure
    (cell,) = expand(parse_suite('tasks = ["linreg"]\noptimizers = ["alig"]\nsteps = 20\n'))
    result = run_cell(cell)
    assert result.status == "done", result.error
    assert result.evaluations[-1].train_loss < 0.5 * result.evaluations[0].train_loss


def test_the_command_line_takes_a_class_by_path(tmp_path, capsys):
    from gradbench.cli import main

    db = tmp_path / "r.db"
    assert main(["run", "--task", "linreg", "--optimizer", f"{PATH}[lr=0.1],torch.optim:SGD", "--lr", "0.05", "--steps", "10", "--db", str(db), "--no-progress"]) == 0
    with Store.open(db, readonly=True) as store:
        assert sorted((run["optimizer"], run["status"]) for run in store.runs()) == [(PATH, "done"), ("torch.optim:SGD", "done")]
    assert main(["run", "--task", "linreg", "--optimizer", "torch.optim:NoSuch", "--db", str(tmp_path / "bad.db")]) == 2
    assert "cannot import 'torch.optim:NoSuch'" in capsys.readouterr().err
    assert not (tmp_path / "bad.db").exists()
