"""The shipped zoo suite (gradbench/suites/zoo.toml): current with the registry, and valid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gradbench.axes.optimizers import OPTIMIZERS
from gradbench.axes.specs import parse_spec
from gradbench.grid import expand, load_suite

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "gradbench" / "suites" / "zoo.toml"


def _script():
    spec = importlib.util.spec_from_file_location("zoo_suite_script", ROOT / "scripts" / "zoo_suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_zoo_is_what_the_script_writes():
    """Registering an optimizer (or changing a default lr) without rewriting the zoo fails here:
    scripts/zoo_suite.py > gradbench/suites/zoo.toml."""
    assert ZOO.read_text() == _script().zoo()


def test_the_zoo_runs_every_trainable_optimizer_at_three_rates():
    suite = load_suite(ZOO)
    (grid,) = suite.grids
    specs = [parse_spec(text) for text in grid["optimizers"]]
    names = [name for name, _ in specs]
    assert sorted(set(names)) == sorted(name for name, spec in OPTIMIZERS.items() if not spec.limitation)
    for name in set(names):
        rates = sorted(params["lr"] for n, params in specs if n == name)
        assert len(rates) == 3 and rates[0] < OPTIMIZERS.get(name).defaults["lr"] < rates[2], name
    assert len(grid["tasks"]) == 3 and grid["validation"] > 0


def test_the_zoo_expands():
    pytest.importorskip("pytorch_optimizer", reason="the extra gradbench[optimizers] is not installed")
    pytest.importorskip("schedulefree", reason="the extra gradbench[optimizers] is not installed")
    cells = expand(load_suite(ZOO))
    assert len(cells) == 3 * 3 * sum(1 for _, spec in OPTIMIZERS.items() if not spec.limitation)
