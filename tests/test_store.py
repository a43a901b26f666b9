"""The SQLite store: complete runs in one transaction, refusing files that are not ours."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gradbench.grid import expand, parse_suite
from gradbench.store import Store, StoreError
from gradbench.train import run_cell


@pytest.fixture(scope="module")
def results(small_mlp_task_module):
    cells = expand(parse_suite("").with_overrides({"tasks": [small_mlp_task_module], "steps": [30], "seeds": [0, 1], "eval_every": 10}))
    return [run_cell(c) for c in cells]


@pytest.fixture(scope="module")
def small_mlp_task_module() -> str:
    return "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


def test_a_saved_run_reads_back_completely(tmp_path, results):
    with Store.open(tmp_path / "r.db", create=True) as store:
        for result in results:
            store.save(result)
        assert store.finished_keys() == {r.cell.key for r in results}
        run = store.runs([results[0].cell.key])[0]
        assert run["status"] == "done" and run["seed"] == 0 and run["optimizer"] == "sgd"
        assert run["final_test_accuracy"] == results[0].evaluations[-1].test_accuracy
        assert run["steps_run"] == 30 and run["threads"] == 1
        curve = store.curve(run["key"])
        assert [row["step"] for row in curve] == list(range(1, 31))
        assert [row["loss"] for row in curve] == results[0].history.losses
        layers = list(store.layer_rows([run["key"]]))
        assert len(layers) == 30 * 4
        first = layers[0]
        assert (first["step"], first["layer_index"], first["layer_name"]) == (1, 0, "layers.0")
        assert first["grad_norm"] == results[0].history.layer_grad_norms[0][0]
        assert [e["step"] for e in store.evaluations(run["key"])] == [0, 10, 20, 30]


def test_saving_again_replaces_without_duplicates(tmp_path, results):
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(results[0])
        store.save(results[0])
        count = store.connection.execute("SELECT count(*) FROM steps").fetchone()[0]
        assert count == 30 and len(store.runs()) == 1


class _FailingConnection:
    """A connection whose insert of per-layer norms fails half-way through a save."""

    def __init__(self, connection):
        self._connection = connection

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def __enter__(self):
        return self._connection.__enter__()

    def __exit__(self, *exc):
        return self._connection.__exit__(*exc)

    def executemany(self, sql, rows):
        if "layer_grad_norms" in sql:
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self._connection.executemany(sql, rows)


def test_a_save_that_fails_half_way_leaves_nothing(tmp_path, results):
    store = Store.open(tmp_path / "r.db", create=True)
    store.save(results[0])
    store.connection = _FailingConnection(store.connection)
    with pytest.raises(sqlite3.OperationalError):
        store.save(results[1])
    store.connection = store.connection._connection
    assert store.finished_keys() == {results[0].cell.key}
    assert store.curve(results[1].cell.key) == []
    assert store.connection.execute("SELECT count(DISTINCT run_key) FROM steps").fetchone()[0] == 1
    store.close()


def test_missing_database_is_not_created_for_reading(tmp_path):
    with pytest.raises(StoreError, match=r"no gradbench database at .*missing.db"):
        Store.open(tmp_path / "missing.db")
    with pytest.raises(StoreError, match="no gradbench database"):
        Store.open(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_text_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my notes, not a database\n" * 10)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"is not a gradbench database \(not an SQLite file\)"):
        Store.open(path, create=True)
    assert path.read_bytes() == before


def test_another_applications_sqlite_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE things (x)")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="SQLite file of another application"):
        Store.open(path, create=True)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Store.open(path, create=True).close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(StoreError, match="newer gradbench"):
        Store.open(path)


def test_directory_and_missing_parent_are_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path, create=True)
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "no" / "such" / "r.db", create=True)


def test_readonly_store_cannot_write(tmp_path, results):
    Store.open(tmp_path / "r.db", create=True).close()
    with Store.open(tmp_path / "r.db", readonly=True) as store:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.save(results[0])


def test_two_processes_creating_one_database_both_succeed(tmp_path):
    import subprocess
    import sys

    script = "import sys; from gradbench.store import Store; Store.open(sys.argv[1], create=True).close()"
    for attempt in range(5):
        path = tmp_path / f"race{attempt}.db"
        processes = [subprocess.Popen([sys.executable, "-c", script, str(path)], stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        with Store.open(path, readonly=True) as store:
            assert store.runs() == []


def test_fifo_and_device_paths_are_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open(fifo, readonly=True)
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open("/dev/null", create=True)


def test_a_hot_journal_left_by_a_killed_writer_does_not_block_reading(tmp_path, results):
    """Copy a database and its journal mid-transaction, as a SIGKILL would leave them."""
    import shutil

    path = tmp_path / "r.db"
    store = Store.open(path, create=True)
    store.save(results[0])
    store.connection.execute("PRAGMA cache_size = 1")  # make the writer spill to the file
    store.connection.execute("BEGIN IMMEDIATE")
    store.connection.executemany("INSERT INTO steps VALUES (?, ?, ?, ?)", [("zz", i, 0.0, 0.0) for i in range(20000)])
    copy = tmp_path / "killed.db"
    shutil.copy(path, copy)
    journal = Path(str(path) + "-journal")
    if not journal.exists():
        store.connection.rollback()
        store.close()
        pytest.skip("this SQLite kept the transaction in memory: no hot journal to recover")
    shutil.copy(journal, str(copy) + "-journal")
    store.connection.rollback()
    store.close()
    with Store.open(copy, readonly=True) as reader:
        assert reader.finished_keys() == {results[0].cell.key}
        assert reader.connection.execute("SELECT count(*) FROM steps WHERE run_key = 'zz'").fetchone()[0] == 0
