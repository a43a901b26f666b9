"""Executors and claims: the process pool stores what the serial executor stores, a worker that
dies costs its cell an attempt (never a duplicate), a killed driver resumes with nothing lost
or duplicated, and two sweeps on one store run every cell exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradbench.cli import main
from gradbench.grid import expand, parse_suite
from gradbench.plugins import PluginError, load_plugins
from gradbench.run import RunContext
from gradbench.store import Store
from gradbench.store.claims import Claimant, is_live, machine_id, process_start
from gradbench.sweep import ExecutorError, ProcessExecutor, SerialExecutor, make_executor, run_sweep
from gradbench.tasks import TASKS

SMALL = "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


def _cells(text: str):
    return expand(parse_suite(text))


GRID = f"""
tasks = ["{SMALL}"]
steps = 60
seeds = [0, 1]
optimizers = ["sgd", "adam"]
activations = ["relu", "tanh"]
"""


def _results(path: Path) -> dict[str, tuple]:
    """Everything a run stored except when and where it ran (timings, environment)."""
    with Store.open(path, readonly=True) as store:
        runs = {}
        for run in store.runs():
            key = run["key"]
            metrics = tuple(run[name] for name in ("status", "final_train_loss", "final_test_loss", "final_test_accuracy", "steps_to_target", "grad_ratio_first_last"))
            losses = tuple(row["loss"] for row in store.curve(key))
            evaluations = tuple((e["step"], e["train_loss"], e["test_loss"], e["test_accuracy"]) for e in store.evaluations(key))
            layers = tuple((r["step"], r["layer_index"], r["grad_norm"], r["weight_norm"], r["update_ratio"]) for r in store.layer_rows([key]))
            runs[key] = (metrics, losses, evaluations, layers)
        return runs


def test_the_process_pool_stores_exactly_what_the_serial_executor_stores(tmp_path):
    cells = _cells(GRID)
    with Store.open(tmp_path / "serial.db", create=True) as store:
        run_sweep(cells, store, executor=SerialExecutor(), progress=False)
    pool = ProcessExecutor(workers=2)
    with Store.open(tmp_path / "pool.db", create=True) as store:
        summary = run_sweep(cells, store, executor=pool, progress=False)
        envs = [json.loads(run["env"]) for run in store.runs()]
        assert store.live_claims() == {} and store.connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    assert summary.ran == len(cells) == 8 and summary.statuses["done"] == 8
    serial, pooled = _results(tmp_path / "serial.db"), _results(tmp_path / "pool.db")
    assert serial.keys() == pooled.keys() and serial == pooled  # bit for bit
    assert {env["concurrent_runs"] for env in envs} == {2}
    assert len({env["worker_pid"] for env in envs}) == 2 and os.getpid() not in {env["worker_pid"] for env in envs}


@pytest.fixture
def dying_task(tmp_path, dying_plugin):
    """Register the dying tasks here too (the driver expands the grid), and unregister after."""
    plugins = {die: dying_plugin(tmp_path, f"die_{die}_{tmp_path.name[-8:].replace('-', '_')}", die) for die in ("once", "always")}
    load_plugins([str(path) for path in plugins.values()])
    names = {die: path.stem.removesuffix("_plugin") for die, path in plugins.items()}
    yield names, plugins
    for name in names.values():
        TASKS.unregister(name)


def test_a_worker_that_dies_costs_its_cell_one_attempt_and_the_cell_is_stored_once(tmp_path, dying_task):
    names, plugins = dying_task
    cells = _cells(f'tasks = ["{names["once"]}", "{names["always"]}"]\nsteps = 20\nseeds = [0, 1]\noptimizers = ["sgd"]')
    with Store.open(tmp_path / "r.db", create=True) as store:
        summary = run_sweep(cells, store, executor=ProcessExecutor(workers=2, max_attempts=2), progress=False, job=RunContext(plugins=tuple(str(p) for p in plugins.values())))
        runs = {(run["task"], run["seed"]): run for run in store.runs()}
    assert len(runs) == 4 and summary.ran == 4
    assert runs[(names["once"], 0)]["status"] == "done" and runs[(names["once"], 1)]["status"] == "done"
    for seed in (0, 1):
        error = runs[(names["always"], seed)]["error"]
        assert runs[(names["always"], seed)]["status"] == "failed"
        assert error == "WorkerDied: the worker process running this cell died (killed by SIGKILL) on each of 2 attempts"
    connection = sqlite3.connect(tmp_path / "r.db")
    assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
    assert connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0


def test_claims_block_a_live_owner_and_are_taken_over_from_a_dead_one(tmp_path):
    cell = _cells(f'tasks = ["{SMALL}"]\nsteps = 5')[0]
    with Store.open(tmp_path / "r.db", create=True) as store:
        me = Claimant.current()
        assert store.claim(cell.key, me) is None
        assert store.claim(cell.key, me) is None  # idempotent for its owner
        other = Claimant.current()  # another sweep in this (live) process
        assert store.claim(cell.key, other) == "running"
        assert store.live_claims() == {cell.key: f"pid {os.getpid()} on {me.host}"}

        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        ghost = Claimant(owner="ghost", host=me.host, pid=dead.pid, pid_start=f"{machine_id()}/1")
        store.release(me)
        assert store.claim(cell.key, ghost) is None
        assert store.live_claims() == {}  # its owner is gone
        assert store.claim(cell.key, other) is None  # so the cell is taken over

        reused = Claimant(owner="reused", host=me.host, pid=os.getpid(), pid_start=f"{machine_id()}/not this process")
        assert not is_live(reused.host, reused.pid, reused.pid_start, time.time())  # a pid reused by another process
        assert process_start(os.getpid()) is not None and me.pid_start == f"{machine_id()}/{process_start(os.getpid())}"
        for elsewhere in (("another-host", 1, None), (me.host, os.getpid(), "another-boot:123/45")):  # another machine, container
            assert is_live(*elsewhere, time.time()) and not is_live(*elsewhere, time.time() - 3600)  # by heartbeat only

        from gradbench.run import run_cell

        store.save(run_cell(cell))
        assert store.connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0  # storing drops the claim
        assert store.claim(cell.key, me) == "stored"


def _descendants(pid: int) -> dict[int, str | None]:
    """The live descendants of ``pid`` (Linux /proc), with their start times: pool workers are
    the children of a fork server, itself the driver's child."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child in [c for c, p in parents.items() if p == parent and c not in found]:
            found[child] = process_start(child)
            frontier.append(child)
    return found


def _worker_pids(path: Path) -> set[int]:
    """The pids of the workers that ran the runs stored so far."""
    try:
        with Store.open(path, readonly=True) as store:
            return {json.loads(run["env"])["worker_pid"] for run in store.runs()}
    except (sqlite3.OperationalError, ValueError):
        return set()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the driver's workers through Linux's /proc")
def test_a_killed_pool_driver_resumes_with_nothing_lost_or_duplicated(tmp_path, stored_runs):
    path = tmp_path / "killed.db"
    command = [
        sys.executable, "-m", "gradbench.cli", "run", "--task", SMALL, "--seeds", "0-5", "--steps", "400",
        "--db", str(path), "--no-progress", "--executor", "process", "--workers", "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(stored_runs(path)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    workers = _descendants(process.pid)
    ran = _worker_pids(path)
    assert ran and ran <= workers.keys(), "the pool workers (still running cells) should be among the driver's descendants"
    assert len(workers) >= 2, "two pool workers (and the fork server, the resource tracker) should be running"
    process.send_signal(signal.SIGKILL)  # the driver only: its workers are left orphaned
    process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and process_start(pid) == start for pid, start in workers.items()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid, start in workers.items() if process_start(pid) == start], "orphaned workers should exit"
    before = stored_runs(path)
    assert 2 <= len(before) < 6, "the sweep should have been killed part-way"
    with Store.open(path, readonly=True) as store:
        assert store.live_claims() == {}  # the dead driver's claims are stale

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"ran {6 - len(before)} " in resumed.stderr and f"{len(before)} already stored" in resumed.stderr
    after = stored_runs(path)
    assert len(after) == 6 and {k: after[k] for k in before} == before
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(n for _, n in connection.execute("SELECT run_key, count(*) FROM steps GROUP BY run_key")) == [400] * 6
    assert connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    connection.close()


def test_two_concurrent_runs_on_one_store_run_every_cell_exactly_once(tmp_path):
    path = tmp_path / "shared.db"
    # 16 cells of about half a second each: the first process is far from done when the second
    # (a few seconds to import torch) starts claiming.
    command = [sys.executable, "-m", "gradbench.cli", "run", "--task", SMALL, "--seeds", "0-15", "--steps", "400", "--db", str(path), "--no-progress"]
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    ran = []
    for err in errors:
        line = next(line for line in err.splitlines() if line.startswith("suite "))
        ran.append(int(line.split(" ran ")[1].split()[0]))
    assert sum(ran) == 16, errors  # no cell trained twice
    assert all(count > 0 for count in ran), errors  # and the work was shared
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 16
    assert sorted(n for _, n in connection.execute("SELECT run_key, count(*) FROM steps GROUP BY run_key")) == [400] * 16
    assert connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file again once both closed
    connection.close()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--executor", "threads"], "unknown executor 'threads'; choose from: serial, process, ray"),
        (["--workers", "2"], "--workers applies to --executor process only (got --executor serial)"),
        (["--executor", "process", "--gpus-per-run", "1"], "--gpus-per-run applies to --executor ray only (got --executor process)"),
        (["--executor", "process", "--workers", "0"], "invalid --workers 0: give a number of worker processes >= 1"),
        (["--plugin", "no_such_plugin_module"], "plugin 'no_such_plugin_module' cannot be imported"),
        (["--plugin", "missing.py"], "plugin file 'missing.py' does not exist"),
        (["--dry-run", "--executor", "bogus"], "unknown executor 'bogus'"),
        (["--dry-run", "--executor", "process", "--workers", "-3"], "invalid --workers -3"),
        (["--dry-run", "--executor", "ray", "--cpus-per-run", "nan"], "invalid --cpus-per-run nan: give a number >= 0"),
    ],
)
def test_bad_executor_input_is_one_line_exit_2_and_writes_nothing(args, pattern, tmp_path, capsys):
    db = tmp_path / "x.db"
    code, out, err = run_cli(capsys, "run", "--task", SMALL, "--steps", "5", "--db", str(db), "--no-progress", *args)
    assert code == 2 and out == ""
    assert err.startswith("gradbench: error: ") and pattern in err and err.count("\n") == 1, err
    assert not db.exists()


def test_the_ray_executor_without_ray_installed_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code, _, err = run_cli(capsys, "run", "--task", SMALL, "--steps", "5", "--db", str(tmp_path / "x.db"), "--executor", "ray")
    assert code == 2 and "the ray executor needs Ray, which is not installed: pip install 'gradbench[ray]'" in err
    assert not (tmp_path / "x.db").exists()


def test_cuda_cells_pinned_to_an_index_are_refused_by_pooled_executors():
    cells = _cells(f'tasks = ["{SMALL}"]\nsteps = 5')
    pinned = [cell.__class__(**{**cell.__dict__, "device": "cuda:1"}) for cell in cells]
    with pytest.raises(ExecutorError, match="device 'cuda:1' cannot run on the process executor"):
        ProcessExecutor().check(pinned)


def test_a_broken_plugin_names_its_error():
    with pytest.raises(PluginError, match="plugin 'json.no_such' cannot be imported"):
        load_plugins(["json.no_such"])
    with pytest.raises(ValueError, match="unknown executor 'x'"):
        make_executor("x")


def test_a_report_reads_while_a_writer_holds_the_store_open(tmp_path, capsys):
    path = tmp_path / "r.db"
    code, _, err = run_cli(capsys, "run", "--task", SMALL, "--steps", "10", "--db", str(path), "--no-progress")
    assert code == 0, err
    with Store.open(path) as writer:  # WAL: a reader does not wait for the writer
        writer.connection.execute("BEGIN IMMEDIATE")
        code, out, err = run_cli(capsys, "report", "--db", str(path))
        writer.connection.execute("ROLLBACK")
    assert code == 0 and "1/1 done" in out, err


def test_pool_workers_are_pinned_to_their_gpus_round_robin(tmp_path):
    """The CUDA path's pinning, on the CPU: each worker starts with its own CUDA_VISIBLE_DEVICES."""
    cells = _cells(f'tasks = ["{SMALL}"]\nsteps = 30\nseeds = [0, 1, 2, 3]')
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    with Store.open(tmp_path / "r.db", create=True) as store:
        run_sweep(cells, store, executor=ProcessExecutor(workers=2, gpus=["3", "5"]), progress=False)
        envs = [json.loads(run["env"]) for run in store.runs()]
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before  # the driver's own is untouched
    pinned = {env["worker_pid"]: env["cuda_visible_devices"] for env in envs}
    assert sorted(pinned.values()) == ["3", "5"]  # two workers, one GPU each


def test_a_worker_that_cannot_start_stops_the_sweep_with_one_line_and_blames_no_cell(tmp_path, capsys):
    """A plugin that imports in the driver but fails in a worker: no cell is charged for it."""
    plugin = tmp_path / "driver_only.py"
    plugin.write_text("import multiprocessing\nif multiprocessing.parent_process() is not None:\n    raise RuntimeError('not in a worker')\n")
    db = tmp_path / "r.db"
    code, _, err = run_cli(capsys, "run", "--task", SMALL, "--steps", "5", "--seeds", "0,1", "--db", str(db), "--no-progress", "--executor", "process", "--plugin", str(plugin))
    assert code == 2 and err.count("\n") == 1, err
    assert "a worker process could not start: PluginError: plugin" in err and "RuntimeError: not in a worker" in err
    with Store.open(db, readonly=True) as store:
        assert store.runs() == [] and store.connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0


def test_a_failed_cell_is_retried_by_one_sweep_only(tmp_path):
    """Two sweeps with --retry-failed: a failure stored after a sweep began is another sweep's
    retry, so the later claim leaves it alone."""
    from datetime import datetime, timedelta, timezone

    from gradbench.run.result import RunResult, now

    cell = _cells(f'tasks = ["{SMALL}"]\nsteps = 5')[0]
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(RunResult(cell=cell, status="failed", error="OutOfMemoryError: ...", started_at=now(), finished_at=now()))
        me = Claimant.current()
        before = datetime.now(timezone.utc) - timedelta(seconds=60)  # a sweep that began before the failure
        assert store.claim(cell.key, me, retry_failed_before=before) == "stored"
        assert store.claim(cell.key, me) == "stored"  # without --retry-failed
        after = datetime.now(timezone.utc) + timedelta(seconds=1)
        assert store.claim(cell.key, me, retry_failed_before=after) is None
