"""Plugins found the way Python packages are: ``gradbench.plugins`` entry points of installed
distributions, loaded lazily (a name not found, a listing), by the driver and every worker.

Each test installs a distribution of its own by hand: a ``*.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` beside the plugin's modules, in a folder put on the path
(``sys.path`` here, ``PYTHONPATH`` for a ``gradbench`` subprocess).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradbench.plugins as plugins
from gradbench.axes.optimizers import OPTIMIZERS
from gradbench.cli import main

SMALL = "mnist1d_mlp[depth=3,width=32,num_samples=1000]"

# A sign-SGD optimizer registered by path, so that listing it imports neither it nor torch.
OPTIMIZER_MODULE = '''
import torch

class SignSGD(torch.optim.Optimizer):
    """Sign SGD: step by lr times the sign of the gradient."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
'''


def _plugin_module(optimizer: str, module: str) -> str:
    """A plugin that notes each import (pid) in $ZOO_PLUGIN_MARKER and registers ``optimizer``."""
    return textwrap.dedent(f'''
        import os
        if os.environ.get("ZOO_PLUGIN_MARKER"):
            with open(os.environ["ZOO_PLUGIN_MARKER"], "a") as marker:
                marker.write(f"{{os.getpid()}}\\n")
        from gradbench.axes.optimizers import register_optimizer

        def register():
            register_optimizer("{optimizer}", "{module}_optim:SignSGD", defaults={{"lr": 0.01}}, description="sign SGD, from a test distribution", needs_closure=False)
    ''')


def make_distribution(root: Path, name: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """Install distribution ``name`` into ``root`` by hand: its modules and a dist-info with
    ``[gradbench.plugins]`` entry points (name -> value)."""
    root.mkdir(parents=True, exist_ok=True)
    for module, text in modules.items():
        (root / f"{module}.py").write_text(text)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[gradbench.plugins]\n{lines}")
    return root


def sign_distribution(root: Path, optimizer: str, *, call: bool = True) -> Path:
    """A distribution whose entry point registers ``optimizer`` (calling ``register``, or, with
    ``call=False``, a module that registers on import)."""
    module = f"{optimizer}_plugin"
    text = _plugin_module(optimizer, optimizer)
    if not call:
        text += "\nregister()\n"
    value = f"{module}:register" if call else module
    return make_distribution(root, f"{optimizer}-dist", {module: text, f"{optimizer}_optim": OPTIMIZER_MODULE}, {optimizer: value})


@pytest.fixture
def fresh_entry_points(monkeypatch):
    """This process as if no entry point had been loaded yet; the optimizers registered by the
    test's plugins are removed afterwards."""
    monkeypatch.setattr(plugins, "_entry_points_started", False)
    monkeypatch.setattr(plugins, "_entry_points_loaded", set())
    monkeypatch.delenv(plugins.AUTOLOAD_OFF, raising=False)
    before = set(OPTIMIZERS._entries)
    yield
    for name in set(OPTIMIZERS._entries) - before:
        del OPTIMIZERS._entries[name]


def _environment(site: Path, marker: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep), **extra}
    env.pop(plugins.AUTOLOAD_OFF, None)
    if marker is not None:
        env["ZOO_PLUGIN_MARKER"] = str(marker)
    return env


def gradbench(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradbench", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_name_not_found_loads_the_entry_points_once(tmp_path, monkeypatch, fresh_entry_points):
    monkeypatch.syspath_prepend(str(sign_distribution(tmp_path / "site", "zoo_found")))
    monkeypatch.setenv("ZOO_PLUGIN_MARKER", str(tmp_path / "marker"))
    assert OPTIMIZERS.get("adam") and not (tmp_path / "marker").exists()  # a name found: nothing loaded
    spec = OPTIMIZERS.get("zoo_found")
    assert spec.description == "sign SGD, from a test distribution" and "zoo_found" in OPTIMIZERS
    with pytest.raises(ValueError, match="unknown optimizer 'zoo_nothing'"):
        OPTIMIZERS.get("zoo_nothing")  # a second miss loads nothing again
    assert (tmp_path / "marker").read_text().count("\n") == 1


def test_asking_whether_a_name_is_registered_loads_them_too(tmp_path, monkeypatch, fresh_entry_points):
    """What ``report`` asks of a stored run's optimizer (its registered defaults label it)."""
    monkeypatch.syspath_prepend(str(sign_distribution(tmp_path / "site", "zoo_asked")))
    assert "zoo_asked" in OPTIMIZERS


def test_every_worker_loads_them_before_its_first_cell(tmp_path, monkeypatch, fresh_entry_points):
    """``RunContext.start``, which the process pool's and Ray's workers (and the serial
    executor) run first: the entry points are loaded up front, with no name missed."""
    from gradbench.run import RunContext

    monkeypatch.syspath_prepend(str(sign_distribution(tmp_path / "site", "zoo_started")))
    assert "zoo_started" not in OPTIMIZERS._entries
    RunContext().start()
    assert "zoo_started" in OPTIMIZERS._entries


def test_a_module_entry_point_registers_on_import_and_listing_loads_it(tmp_path, monkeypatch, fresh_entry_points):
    monkeypatch.syspath_prepend(str(sign_distribution(tmp_path / "site", "zoo_listed", call=False)))
    assert "zoo_listed" in OPTIMIZERS.names()


def test_help_and_a_report_of_known_names_load_no_entry_point_and_list_does(tmp_path):
    site, marker = sign_distribution(tmp_path / "site", "zoo_lazy"), tmp_path / "marker"
    env = _environment(site, marker)
    assert gradbench("--help", env=env, cwd=tmp_path).returncode == 0
    done = gradbench("run", "--task", "linreg[dim=4,num_train=64]", "--optimizer", "sgd", "--steps", "3", "--db", "r.db", "--no-progress", env={**env, plugins.AUTOLOAD_OFF: "1"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert gradbench("report", "--db", "r.db", env=env, cwd=tmp_path).returncode == 0
    assert not marker.exists()
    listed = gradbench("list", "optimizers", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "zoo_lazy" in listed.stdout and "sign SGD, from a test distribution" in listed.stdout
    assert marker.read_text().count("\n") == 1


def test_an_entry_point_optimizer_runs_in_the_process_pools_workers(tmp_path):
    """``gradbench run --executor process --workers 2``: the driver and both workers load the
    entry point (each notes its pid), and both cells train with the plugin's optimizer."""
    site, marker = sign_distribution(tmp_path / "site", "zoo_pooled"), tmp_path / "marker"
    env = _environment(site, marker)
    ran = gradbench(
        "run", "--task", SMALL, "--optimizer", "zoo_pooled", "--steps", "5", "--seeds", "0,1", "--db", "r.db", "--no-progress",
        "--executor", "process", "--workers", "2", env=env, cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    exported = gradbench("export", "--db", "r.db", "--what", "runs", env=env, cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(row["optimizer"], row["status"]) for row in rows] == [("zoo_pooled", "done")] * 2
    workers = {str(json.loads(row["env"])["worker_pid"]) for row in rows}
    loaded_in = set(marker.read_text().split())
    assert workers <= loaded_in and len(loaded_in) >= 2  # the driver too, unless a worker ran both


def test_an_entry_point_that_fails_to_load_is_one_line_naming_it_and_exit_2(tmp_path):
    site = make_distribution(tmp_path / "site", "zoo-broken", {"zoo_broken_plugin": "raise ImportError('no module named zoo_missing_dependency')\n"}, {"zoo_broken": "zoo_broken_plugin"})
    env = _environment(site)
    for args in (["list"], ["run", "--task", "linreg", "--optimizer", "sgd", "--db", "r.db", "--dry-run"], ["run", "--task", "linreg", "--steps", "2", "--db", "r.db"]):
        failed = gradbench(*args, env=env, cwd=tmp_path)
        assert failed.returncode == 2, (args, failed.stderr)
        assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
        assert "plugin entry point 'zoo_broken' (zoo_broken_plugin, from zoo-broken 0.1) failed to load: ImportError: no module named zoo_missing_dependency" in failed.stderr
    assert not (tmp_path / "r.db").exists()
    # The way out of a broken installed plugin: turn the entry points off.
    assert gradbench("list", "optimizers", env={**env, plugins.AUTOLOAD_OFF: "1"}, cwd=tmp_path).returncode == 0


def test_a_failing_entry_point_in_process_is_a_plugin_error_and_a_usage_error(tmp_path, monkeypatch, capsys, fresh_entry_points):
    site = make_distribution(tmp_path / "site", "zoo-exits", {"zoo_exits_plugin": "import sys\nsys.exit(4)\n"}, {"zoo_exits": "zoo_exits_plugin"})
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(plugins.PluginError, match=r"plugin entry point 'zoo_exits' \(zoo_exits_plugin, from zoo-exits 0.1\) called sys.exit\(4\)"):
        OPTIMIZERS.get("zoo_no_such_name")
    assert main(["list", "optimizers"]) == 2  # tried again, not remembered as loaded
    assert "called sys.exit(4)" in capsys.readouterr().err
