"""The Ray executor on a real local Ray cluster with two fake GPUs (``ray.init(num_cpus=2,
num_gpus=2)``): runs a grid, gives concurrent tasks different ``CUDA_VISIBLE_DEVICES``, stores
a task whose worker died on its first attempt exactly once, and refuses resources the cluster
does not have at once instead of waiting forever."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'gradbench[ray]'); CI installs it")

from gradbench.grid import expand, parse_suite  # noqa: E402
from gradbench.plugins import load_plugins  # noqa: E402
from gradbench.run import RunContext  # noqa: E402
from gradbench.store import Store  # noqa: E402
from gradbench.sweep import ExecutorError, RayExecutor, run_sweep  # noqa: E402
from gradbench.tasks import TASKS  # noqa: E402

SMALL = "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


def test_sigterm_stops_a_ray_sweep_as_ctrl_c_does(tmp_path, stored_runs):
    """ray.init installs a SIGTERM handler of its own that exits at once; the executor keeps
    the CLI's, so the sweep stops as on Ctrl-C: finished cells kept, claims released, exit 143.
    (Its own local Ray, in a subprocess: before the module's cluster starts.)"""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "ray.db"
    command = [sys.executable, "-m", "gradbench.cli", "run", "--task", SMALL, "--seeds", "0-7", "--steps", "600", "--db", str(path), "--no-progress", "--executor", "ray"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_ADDRESS": "local"})
    deadline = time.monotonic() + 180
    while len(stored_runs(path)) < 1 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    stored = stored_runs(path)
    assert 1 <= len(stored) < 8
    assert f"terminated (SIGTERM): {len(stored)} of 8 cells are stored" in err and "Traceback" not in err
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    connection.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray.db"]


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module: 2 CPUs and 2 fake GPUs (Ray assigns GPU ids, and sets
    CUDA_VISIBLE_DEVICES, whether or not the hardware exists)."""
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _overlap(a: dict, b: dict) -> bool:
    start = max(datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(b["started_at"]))
    end = min(datetime.fromisoformat(a["finished_at"]), datetime.fromisoformat(b["finished_at"]))
    return start < end


def test_a_grid_runs_as_ray_tasks_each_on_its_own_gpu(cluster, tmp_path):
    cells = expand(parse_suite(f'tasks = ["{SMALL}"]\nsteps = 300\nseeds = [0, 1, 2, 3]\noptimizers = ["sgd"]'))
    executor = RayExecutor(gpus_per_run=1)
    with Store.open(tmp_path / "r.db", create=True) as store:
        summary = run_sweep(cells, store, executor=executor, progress=False)
        runs = store.runs()
    executor.close()
    assert ray.is_initialized()  # a cluster the executor did not start is left running
    assert summary.statuses["done"] == 4 and len(runs) == 4
    envs = {run["key"]: json.loads(run["env"]) for run in runs}
    assert {env["cuda_visible_devices"] for env in envs.values()} == {"0", "1"}
    assert {env["concurrent_runs"] for env in envs.values()} == {2}  # 2 GPUs / 1 per run
    overlapping = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :] if _overlap(a, b)]
    assert overlapping, "two tasks should have run at once"
    for a, b in overlapping:
        assert envs[a["key"]]["cuda_visible_devices"] != envs[b["key"]]["cuda_visible_devices"]


def test_a_task_whose_worker_dies_on_its_first_attempt_is_stored_exactly_once(cluster, tmp_path, dying_plugin):
    plugin = dying_plugin(tmp_path, "die_once_ray", "once")
    load_plugins([str(plugin)])
    try:
        cells = expand(parse_suite('tasks = ["die_once_ray"]\nsteps = 20\noptimizers = ["sgd"]'))
        with Store.open(tmp_path / "r.db", create=True) as store:
            summary = run_sweep(cells, store, executor=RayExecutor(), progress=False, job=RunContext(plugins=(str(plugin),)))
            runs = store.runs()
    finally:
        TASKS.unregister("die_once_ray")
    assert (tmp_path / "die_once_ray.marker").exists()  # the first attempt did die
    assert summary.ran == 1 and [run["status"] for run in runs] == ["done"]
    connection = sqlite3.connect(tmp_path / "r.db")
    assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert connection.execute("SELECT count(*) FROM steps").fetchone()[0] == 20
    assert connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0


def test_asking_for_more_gpus_than_any_node_has_fails_at_once(cluster):
    cells = expand(parse_suite(f'tasks = ["{SMALL}"]\nsteps = 5'))
    fits_nowhere = r"no node of the Ray cluster can run one cell with --cpus-per-run {} --gpus-per-run {} \(nodes: 2 CPU \+ 2 GPU\); lower them or add nodes"
    with pytest.raises(ExecutorError, match=fits_nowhere.format(1, 3)):
        RayExecutor(gpus_per_run=3).check(cells)
    with pytest.raises(ExecutorError, match=fits_nowhere.format(4, 0)):
        RayExecutor(cpus_per_run=4).check(cells)
    with pytest.raises(ExecutorError, match="invalid --gpus-per-run -1"):
        RayExecutor(gpus_per_run=-1).check(cells)
    with pytest.raises(ExecutorError, match="invalid --gpus-per-run 1.5: above 1 it must be a whole number of GPUs"):
        RayExecutor(gpus_per_run=1.5).check(cells)


def test_capacity_counts_cpus_and_gpus_of_the_same_node_and_packs_fractional_gpus():
    from gradbench.sweep.ray_executor import _runs_per_node

    cpu_node, gpu_node = {"CPU": 16.0}, {"CPU": 2.0, "GPU": 4.0}
    assert [_runs_per_node(n, 4, 1) for n in (cpu_node, gpu_node)] == [0, 0]  # 4 CPUs + 1 GPU fit on neither
    assert [_runs_per_node(n, 1, 1) for n in (cpu_node, gpu_node)] == [0, 2]  # the GPU node's 2 CPUs bind
    assert _runs_per_node({"CPU": 64.0, "GPU": 2.0}, 1, 0.4) == 4  # 2 per GPU (0.4 + 0.4 <= 1), not 2 / 0.4 = 5
    assert _runs_per_node({"CPU": 64.0, "GPU": 8.0}, 1, 2) == 4
    assert _runs_per_node(cpu_node, 1, 0) == 16


def test_an_address_nothing_answers_on_fails_at_once():
    import socket
    import time

    from gradbench.sweep.ray_executor import _check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=rf"cannot reach Ray at '127.0.0.1:{port}'"):
        _check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    with pytest.raises(ExecutorError, match="invalid --ray-address 'nonsense'; choose from: auto, HOST:PORT, ray://HOST:PORT"):
        _check_reachable("nonsense")
    _check_reachable("auto")  # left to ray.init


def test_an_error_raised_in_a_ray_task_is_stored_with_its_cause(cluster, tmp_path):
    """A plugin file missing on the worker: the job raises there, once (not retried)."""
    from gradbench.run import RunContext

    cells = expand(parse_suite(f'tasks = ["{SMALL}"]\nsteps = 5'))
    executor = RayExecutor()
    executor.check(cells)
    (result,) = list(executor.map(RunContext(plugins=(str(tmp_path / "gone.py"),)), iter(cells)))
    assert result.status == "failed"
    assert result.error == f"PluginError: plugin file {str(tmp_path / 'gone.py')!r} does not exist"


def test_closing_the_results_on_a_joined_cluster_cancels_the_tasks_still_running(cluster, tmp_path, monkeypatch):
    """Ctrl-C or a driver error closes map's generator: on a cluster the executor joined (and
    close() leaves up) the task still running is cancelled, the finished one is not, and the
    CPU is free at once. (Ray may also stop a task whose result nobody holds: the calls are
    what tells.)"""
    import time
    from pathlib import Path

    from gradbench.run import RunResult

    class Job:  # defined here: pickled by value for the Ray workers
        def __init__(self, started: Path) -> None:
            self.started = started

        def start(self) -> None:
            pass

        def alongside(self, runs: int) -> Job:
            return self

        def __call__(self, cell, on_steps=None):
            if cell.seed == 1:
                self.started.touch()
                time.sleep(120)
            return RunResult(cell, "done")

    started = tmp_path / "started"
    cancelled = []
    cancel = ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **options: (cancelled.append(ref), cancel(ref, **options)))
    cells = expand(parse_suite(f'tasks = ["{SMALL}"]\nsteps = 5\nseeds = [0, 1]'))
    executor = RayExecutor()
    executor.check(cells)
    results = executor.map(Job(started), iter(cells))
    assert next(results).cell.seed == 0
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:  # running, not merely queued
        time.sleep(0.05)
    assert started.exists()
    results.close()
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(cancelled) == 1 and ray.available_resources().get("CPU", 0) == 2 and ray.is_initialized()


def test_the_cli_runs_on_ray_and_refuses_what_the_cluster_lacks_writing_nothing(cluster, tmp_path, capsys):
    from gradbench.cli import main

    db = tmp_path / "r.db"
    base = ["run", "--task", SMALL, "--steps", "20", "--seeds", "0,1", "--db", str(db), "--no-progress", "--executor", "ray"]
    assert main([*base, "--gpus-per-run", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradbench: error: no node of the Ray cluster can run one cell") and err.count("\n") == 1
    assert not db.exists()
    assert main([*base, "--gpus-per-run", "1.5"]) == 2
    assert "must be a whole number of GPUs" in capsys.readouterr().err and not db.exists()
    assert main([*base, "--gpus-per-run", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "2 cells, ran 2 (2 done)" in err
    with Store.open(db, readonly=True) as store:
        assert {json.loads(run["env"])["concurrent_runs"] for run in store.runs()} == {2}  # CPUs bind: 2 / 1


def test_cuda_cells_go_to_the_cluster_from_a_driver_without_a_gpu(cluster, tmp_path, capsys):
    """The driver checks only the spelling of 'cuda' (the cluster's nodes have the GPUs); here
    the fake GPUs have no CUDA behind them, so each worker reports that as its cell's failure."""
    import torch

    from gradbench.cli import main

    if torch.cuda.is_available():
        pytest.skip("checks a driver without CUDA")
    db = tmp_path / "r.db"
    assert main(["run", "--task", SMALL, "--steps", "5", "--device", "cuda", "--db", str(db), "--no-progress", "--executor", "ray"]) == 0
    assert "1 cells, ran 1 (1 failed)" in capsys.readouterr().err
    with Store.open(db, readonly=True) as store:
        (run,) = store.runs()
    assert run["device"] == "cuda" and "CUDA is not available" in run["error"]
    assert main(["run", "--task", SMALL, "--steps", "5", "--device", "cuda", "--db", str(tmp_path / "x.db"), "--executor", "process"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err  # the pool runs here: checked here
