"""How process-pool workers start: forked from a fork server that imported torch once, with the
driver's environment and their own GPU pin, the plugins loaded, no CUDA state, and the same
retry and start-failure behaviour as spawned workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradbench.grid import expand, parse_suite
from gradbench.run import RunContext
from gradbench.store import Store
from gradbench.sweep import ExecutorError, ProcessExecutor, run_sweep
from gradbench.sweep.process_pool import WorkerStartError, _check_pinned
from gradbench.tasks import TASKS

linux_only = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the fork server's state through Linux's /proc")


def _probe_plugin(folder: Path, name: str) -> Path:
    """A plugin file that registers task ``name`` (linreg) and, when imported in a worker, writes
    what the worker looks like at start-up (before any cell) to ``<folder>/<pid>.json``."""
    path = folder / f"{name}_plugin.py"
    path.write_text(
        f"""
import json, multiprocessing, os, sys
from dataclasses import replace
from pathlib import Path
from gradbench.tasks import TASKS, register_task

if multiprocessing.parent_process() is not None:  # a worker, not the driver
    import torch
    Path({str(folder)!r}, f"{{os.getpid()}}.json").write_text(json.dumps({{
        "pid": os.getpid(), "ppid": os.getppid(), "driver": multiprocessing.parent_process().pid,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "set_after_server_start": os.environ.get("GRADBENCH_TEST_PROBE"),
        "cuda_initialized": torch.cuda.is_initialized(),
    }}))
if {name!r} not in TASKS:
    register_task(replace(TASKS.get("linreg"), name={name!r}, description="linreg, from a plugin"))
"""
    )
    return path


@pytest.fixture
def probe(tmp_path):
    name = f"probe_{tmp_path.name[-8:].replace('-', '_')}"
    plugin = _probe_plugin(tmp_path, name)
    yield name, plugin
    if name in TASKS:
        TASKS.unregister(name)


def _probed_sweep(tmp_path: Path, name: str, plugin: Path, start_method: str | None) -> list[dict]:
    from gradbench.plugins import load_plugins

    load_plugins([str(plugin)])  # the driver expands the grid: it needs the task too
    cells = expand(parse_suite(f'tasks = ["{name}"]\nsteps = 5\nseeds = [0, 1, 2, 3]'))
    with Store.open(tmp_path / "r.db", create=True) as store:
        chosen = {"start_method": start_method} if start_method else {}  # else the default
        executor = ProcessExecutor(workers=2, gpus=["3", "5"], **chosen)
        summary = run_sweep(cells, store, executor=executor, progress=False, job=RunContext(plugins=(str(plugin),)))
    assert summary.statuses["done"] == 4  # the plugin's task ran in the workers
    assert len(executor.startup_s) == 2 and executor.first_ready_s is not None
    return [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]


@linux_only
def test_workers_fork_from_a_server_that_imported_torch_and_take_the_drivers_environment(tmp_path, probe, monkeypatch):
    name, plugin = probe
    warm = ProcessExecutor(workers=1)  # make sure the fork server runs before the variable is set
    cells = expand(parse_suite('tasks = ["linreg"]\nsteps = 2'))
    with Store.open(tmp_path / "warm.db", create=True) as store:
        run_sweep(cells, store, executor=warm, progress=False)
    monkeypatch.setenv("GRADBENCH_TEST_PROBE", "driver's, set later")

    workers = _probed_sweep(tmp_path, name, plugin, None)
    assert len(workers) == 2  # the plugin was imported in each worker (and not written by the driver)
    assert {w["driver"] for w in workers} == {os.getpid()} and os.getpid() not in {w["pid"] for w in workers}
    (server,) = {w["ppid"] for w in workers}  # both forked by one process, which is not the driver
    assert server != os.getpid()
    assert b"multiprocessing.forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()
    assert "libtorch" in Path(f"/proc/{server}/maps").read_text()  # torch was imported there, once
    assert sorted(w["cuda_visible_devices"] for w in workers) == ["3", "5"]  # each pinned at start-up
    assert {w["set_after_server_start"] for w in workers} == {"driver's, set later"}
    assert not any(w["cuda_initialized"] for w in workers)  # nor, then, in the server they forked from
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != "3"  # the driver's own is untouched


def test_spawned_workers_still_start_with_their_pin_and_plugins(tmp_path, probe):
    name, plugin = probe
    workers = _probed_sweep(tmp_path, name, plugin, "spawn")
    assert len(workers) == 2 and {w["ppid"] for w in workers} == {os.getpid()}
    assert sorted(w["cuda_visible_devices"] for w in workers) == ["3", "5"]


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_worker_killed_mid_cell_is_replaced_and_the_cell_retried(tmp_path, dying_plugin, start_method):
    name = f"die_once_{start_method}_{tmp_path.name[-8:].replace('-', '_')}"
    plugin = dying_plugin(tmp_path, name, "once")  # SIGKILLs its worker in its first cell's build
    from gradbench.plugins import load_plugins

    load_plugins([str(plugin)])
    try:
        cells = expand(parse_suite(f'tasks = ["{name}"]\nsteps = 5\nseeds = [0]'))
        executor = ProcessExecutor(workers=1, max_attempts=2, start_method=start_method)
        with Store.open(tmp_path / "r.db", create=True) as store:
            summary = run_sweep(cells, store, executor=executor, progress=False, job=RunContext(plugins=(str(plugin),)))
            (run,) = store.runs()
        assert summary.statuses["done"] == 1 and run["status"] == "done"
        assert len(executor.startup_s) == 2  # the first worker, and the one that replaced it
    finally:
        TASKS.unregister(name)


@linux_only
def test_a_worker_mid_cell_exits_soon_after_its_driver_is_killed(tmp_path):
    """Its parent is the fork server, not the driver: it must notice the driver's death between
    steps, not at the end of a cell that would run for many minutes."""
    marker = tmp_path / "training"
    plugin = tmp_path / "long_plugin.py"
    plugin.write_text(
        f"""
import os
from dataclasses import replace
from pathlib import Path
from gradbench.tasks import TASKS, register_task

linreg = TASKS.get("linreg")

def build(config):
    Path({str(marker)!r}).write_text(str(os.getpid()))
    return linreg.build(config)

if "long_linreg" not in TASKS:
    register_task(replace(linreg, name="long_linreg", description="linreg that says when it starts", build=build))
"""
    )
    driver = tmp_path / "driver.py"
    driver.write_text(
        f"""
from gradbench.grid import expand, parse_suite
from gradbench.plugins import load_plugins
from gradbench.run import RunContext
from gradbench.store import Store
from gradbench.sweep import ProcessExecutor, run_sweep

if __name__ == "__main__":
    load_plugins([{str(plugin)!r}])
    cells = expand(parse_suite('tasks = ["long_linreg"]\\nsteps = 20000000'))
    with Store.open({str(tmp_path / "r.db")!r}, create=True) as store:
        run_sweep(cells, store, executor=ProcessExecutor(workers=1), progress=False, job=RunContext(plugins=({str(plugin)!r},)))
"""
    )
    process = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), process.stderr.read() if process.poll() is not None else "the cell never started"
        time.sleep(0.05)  # the pid is written whole by then
        worker = int(marker.read_text())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 60  # the cell itself would run for many minutes
        while Path(f"/proc/{worker}").exists() and _state(worker) != "Z" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{worker}").exists() or _state(worker) == "Z", "the orphaned worker is still training"
    finally:
        if process.poll() is None:
            process.kill()
        if worker is not None and Path(f"/proc/{worker}").exists():
            os.kill(worker, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_a_worker_that_sees_every_gpu_refuses_to_start(monkeypatch):
    """CUDA initialised before the pin (the main module's import, say): the pin would be ignored."""
    import torch

    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", lambda: 4, raising=False)
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES=2 sees 4 GPUs, not 1: CUDA was initialised before the pin"):
        _check_pinned("2")
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", lambda: 0, raising=False)
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES=9 sees no GPU"):  # a pin to no GPU of this machine
        _check_pinned("9")
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", lambda: 1, raising=False)
    _check_pinned("2")


def test_an_unknown_start_method_is_one_line():
    with pytest.raises(ExecutorError, match="invalid start_method 'fork'; choose from: forkserver, spawn"):
        ProcessExecutor(start_method="fork")


def test_a_fork_server_that_dies_is_a_start_error(tmp_path, monkeypatch):
    """A fork server that dies before forking (here: a preloaded module exits) blames no cell."""
    import multiprocessing.forkserver

    (tmp_path / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    server = multiprocessing.forkserver.ForkServer()  # a private one: the shared server is left alone
    server.set_forkserver_preload(["exits_on_import"])
    monkeypatch.setattr(multiprocessing.forkserver, "connect_to_new_process", server.connect_to_new_process)
    cells = expand(parse_suite('tasks = ["linreg"]\nsteps = 2'))
    try:
        with Store.open(tmp_path / "r.db", create=True) as store:
            with pytest.raises(WorkerStartError, match="a worker process could not start: the forkserver server failed"):
                run_sweep(cells, store, executor=ProcessExecutor(workers=1), progress=False)
            assert store.runs() == []
    finally:
        server._stop()
