"""Tests for the optimizers of other packages (gradbench.axes.optimizer_catalog): the table
agrees with the installed packages, every entry trains, `list` shows where each comes from, and
without the extra naming one is one line saying what to install."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import pytest
import torch

from gradbench.axes.optimizer_catalog import CATALOG, LEFT_OUT, LIMITATIONS
from gradbench.axes.optimizers import OPTIMIZERS, get_optimizer, resolve_hyperparameters

from optimizer_training import train as _train  # the same problem and loop as torch.optim's entries

torch.set_num_threads(1)
pytest.importorskip("pytorch_optimizer", reason="the extra gradbench[optimizers] is not installed")
pytest.importorskip("schedulefree", reason="the extra gradbench[optimizers] is not installed")

STEPS = 200
# Entries whose default learning rate moves the loss less than 5% in 200 steps of this problem
# get 10x theirs (measured: adamod 0.98x, lars 0.99x, shampoo 0.97x, grokfastadamw 0.95x at 1x;
# 0.85x, 0.92x, 0.71x, 0.59x at 10x). LARS is made for large batches.
LR_OVERRIDES = {"adamod": 10, "lars": 10, "shampoo": 10, "grokfastadamw": 10}
NAMES = [entry.name for entry in CATALOG]


def test_the_table_agrees_with_the_installed_packages():
    """Path, learning rate, closure and train/eval modes as the classes themselves say (the
    table is data so that `list` imports neither torch nor the packages)."""
    for entry in CATALOG:
        spec = get_optimizer(entry.name)
        optimizer_class = spec.optimizer_class  # imports, and checks it is an Optimizer
        parameter = inspect.signature(optimizer_class.__init__).parameters.get("lr")
        lr = None if parameter is None else parameter.default
        assert lr is None or math.isclose(lr, entry.lr), entry.name  # none (A2Grad, AliG, SaRA): the table gives 1e-3
        assert spec.train_eval_modes == (hasattr(optimizer_class, "train") and hasattr(optimizer_class, "eval")), entry.name
        assert spec.source == entry.source and spec.extra == "optimizers"
    import pytorch_optimizer

    offered = set(pytorch_optimizer.get_supported_optimizers())
    torch_classes = {name for name in offered if pytorch_optimizer.load_optimizer(name).__module__.startswith("torch.optim")}
    registered = {entry.path.partition(":")[2].lower() for entry in CATALOG if entry.source == "pytorch-optimizer"}
    # Every optimizer it offers is registered, a torch.optim class it re-exports, or left out with a reason.
    assert offered - torch_classes - set(LEFT_OUT) == registered
    assert torch_classes == {"adam", "adamw", "lbfgs", "nadam", "rmsprop", "sgd"}


def test_bare_names_are_torch_optim_and_clashes_get_the_package_prefix():
    for entry in CATALOG:
        assert get_optimizer(entry.name).source != "torch.optim"
        if entry.name.startswith("po_"):
            assert get_optimizer(entry.name[3:]).source == "torch.optim"


@pytest.mark.parametrize("name", NAMES)
def test_every_catalogue_optimizer_lowers_the_loss(name):
    spec = get_optimizer(name)
    if spec.limitation:
        pytest.skip(f"{name}: {spec.limitation}")
    overrides = {"lr": spec.defaults["lr"] * LR_OVERRIDES[name]} if name in LR_OVERRIDES else {}
    initial, final = _train(name, resolve_hyperparameters(name, overrides), steps=STEPS)
    assert math.isfinite(final)
    assert final < 0.95 * initial, f"{name}: loss {initial:.4f} -> {final:.4f}"


def test_limitations_name_registered_entries():
    assert set(LIMITATIONS) <= set(NAMES)
    assert not set(LEFT_OUT) & set(OPTIMIZERS)


def test_list_shows_sixty_and_more_with_their_source_without_torch():
    code = (
        "import sys\nfrom gradbench.cli import main\nmain(['list', 'optimizers'])\n"
        "assert 'torch' not in sys.modules and 'pytorch_optimizer' not in sys.modules, 'list imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(rows) >= 60
    sources = {line.split("[", 1)[1].split("]", 1)[0].split(",")[0].split(";")[0] for line in rows}
    assert sources == {"torch.optim", "pytorch-optimizer", "schedulefree"}
    assert any(line.split()[0] == "lion" and "[pytorch-optimizer]" in line for line in rows)
    assert any(line.split()[0] == "adahessian" and "not trainable here: needs Hessian-vector products" in line for line in rows)


def test_without_the_extra_naming_one_is_one_line(tmp_path):
    """An entry of an extra that is not installed: `list` says so, `run` refuses in one line
    (exit 2) naming the extra, and nothing is written."""
    plugin = tmp_path / "missing.py"
    plugin.write_text(
        "from gradbench import register_optimizer\n"
        "register_optimizer('nowhere', 'gradbench_no_such_package:Opt', defaults={'lr': 0.1}, description='absent',\n"
        "                   needs_closure=False, source='no-such-package', extra='optimizers')\n"
    )
    db = tmp_path / "r.db"
    run = subprocess.run(
        [sys.executable, "-m", "gradbench", "run", "--plugin", str(plugin), "--task", "linreg", "--optimizer", "nowhere", "--steps", "2", "--db", str(db)],
        capture_output=True, text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "gradbench: error: --optimizer: optimizer 'nowhere' comes from no-such-package, which is not installed: pip install 'gradbench[optimizers]'"
    ]
    assert not db.exists()
    listed = subprocess.run([sys.executable, "-m", "gradbench", "list", "optimizers", "--plugin", str(plugin)], capture_output=True, text=True, check=True).stdout
    assert "[no-such-package, not installed: pip install 'gradbench[optimizers]'] absent" in listed


def test_naming_a_left_out_optimizer_gives_its_reason_and_exit_2(capsys):
    from gradbench.cli import main

    assert main(["run", "--optimizer", "lorarite", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "optimizer 'lorarite' is left out: it optimizes LoRA factor pairs" in error and "Traceback" not in error


def test_the_optimizer_extra_lets_einsum_choose_its_contraction_order():
    # PSGD Kron's preconditioner is a five-operand einsum: left to right (torch without the
    # opt_einsum package) it builds a 64^4 intermediate on a 64-wide layer, 250x slower.
    assert torch.backends.opt_einsum.is_available() and torch.backends.opt_einsum.enabled
    from gradbench.run.environment import environment

    assert environment(torch.device("cpu"))["opt_einsum"] is True
