"""The SQLite store: complete runs in one transaction, refusing files that are not ours."""

from __future__ import annotations

import json
import sqlite3
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from gradbench.grid import expand, parse_suite
from gradbench.run import run_cell
from gradbench.store import Store, StoreError
from gradbench.store.schema import SCHEMA_VERSION


@pytest.fixture(scope="module")
def results(small_mlp_task_module):
    overrides = {"tasks": [small_mlp_task_module], "steps": [30], "seeds": [0, 1], "eval_every": 10, "record_every": 1, "detail_every": 5}
    cells = expand(parse_suite("").with_overrides(overrides))
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


def test_health_statistics_read_back_exactly(tmp_path, results):
    history = results[0].history
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(results[0])
        layers = list(store.layer_rows())
        by_step = {(row["step"], row["layer_index"]): row for row in layers}
        for step, after, weights, ratios in zip(history.grad_steps, history.layer_grad_norms_after, history.layer_weight_norms, history.layer_update_ratios):
            for index in range(4):
                row = by_step[step, index]
                assert row["grad_norm_after_clip"] == after[index]
                assert row["weight_norm"] == (weights[index] if weights is not None else None)
                assert row["update_ratio"] == (ratios[index] if ratios is not None else None)
        assert [step for step, ratios in zip(history.grad_steps, history.layer_update_ratios) if ratios] == [1, 6, 11, 16, 21, 26]
        assert [step for step, weights in zip(history.grad_steps, history.layer_weight_norms) if weights] == [1, 6, 11, 16, 21, 26]
        activations = list(store.activation_rows())
        assert len(activations) == 6 * 3  # details at steps 1, 6, ..., 26; three ReLU sites
        first = activations[0]
        assert (first["step"], first["site_name"], first["module"], first["kind"], first["units"]) == (1, "layers.1", "ReLU", "rectifier", 32)
        assert first["dead_fraction"] == history.dead_fraction[0][0] and first["saturated_fraction"] is None
        assert first["mean"] == history.activation_mean[0][0] and first["std"] == history.activation_std[0][0]
        clip_fired = [row[0] for row in store.connection.execute("SELECT clip_fired FROM grad_norms ORDER BY step")]
        assert clip_fired == [None] * 30  # no clipping
        health = store.health(store.runs()[0])
        assert health.layer_names == history.layer_names and health.grad_steps == history.grad_steps
        assert health.first_last == [(row[0], row[-1]) for row in history.layer_grad_norms]
        assert health.total_norms == history.total_norm_before
        assert health.sites == history.activation_sites and health.dead == history.dead_fraction


# The schema of gradbench 0.1 (version 1), as it was: what migration starts from.
_SCHEMA_1 = """
CREATE TABLE runs (key TEXT PRIMARY KEY, status TEXT NOT NULL, label TEXT NOT NULL, task TEXT NOT NULL,
    task_knobs TEXT NOT NULL, optimizer TEXT NOT NULL, hyperparameters TEXT NOT NULL, lr REAL NOT NULL,
    activation TEXT, init TEXT, clip TEXT NOT NULL, seed INTEGER NOT NULL, steps INTEGER NOT NULL,
    batch_size INTEGER, device TEXT NOT NULL, threads INTEGER NOT NULL, config TEXT NOT NULL, metric TEXT,
    target REAL, steps_run INTEGER, final_train_loss REAL, final_test_loss REAL, final_test_accuracy REAL,
    steps_to_target INTEGER, time_to_target_s REAL, median_step_time_s REAL, total_train_time_s REAL,
    grad_ratio_first_last REAL, nonfinite_step INTEGER, nonfinite_quantity TEXT, nonfinite_layer TEXT,
    error TEXT, env TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT NOT NULL, wall_time_s REAL NOT NULL);
CREATE TABLE steps (run_key TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, step_time_s REAL, PRIMARY KEY (run_key, step)) WITHOUT ROWID;
CREATE TABLE evaluations (run_key TEXT NOT NULL, step INTEGER NOT NULL, train_loss REAL, test_loss REAL,
    test_accuracy REAL, train_time_s REAL NOT NULL, PRIMARY KEY (run_key, step)) WITHOUT ROWID;
CREATE TABLE layers (run_key TEXT NOT NULL, layer_index INTEGER NOT NULL, layer_name TEXT NOT NULL,
    num_params INTEGER NOT NULL, PRIMARY KEY (run_key, layer_index)) WITHOUT ROWID;
CREATE TABLE layer_grad_norms (run_key TEXT NOT NULL, step INTEGER NOT NULL, layer_index INTEGER NOT NULL,
    grad_norm REAL, PRIMARY KEY (run_key, step, layer_index)) WITHOUT ROWID;
CREATE TABLE grad_norms (run_key TEXT NOT NULL, step INTEGER NOT NULL, norm_before_clip REAL,
    norm_after_clip REAL, PRIMARY KEY (run_key, step)) WITHOUT ROWID;
PRAGMA application_id = 1195527747;
PRAGMA user_version = 1;
"""


def _version_1_file(path: Path) -> None:
    """A version-1 database holding one run with its per-layer gradient norms."""
    connection = sqlite3.connect(path)
    connection.executescript(_SCHEMA_1)
    config = '{"record_every": 1}'
    connection.execute(
        "INSERT INTO runs (key, status, label, task, task_knobs, optimizer, hyperparameters, lr, clip, seed, steps, device, threads, config, env, started_at, finished_at, wall_time_s)"
        " VALUES ('old', 'done', 'old run', 'linreg', '{}', 'sgd', '{}', 0.1, 'none', 0, 2, 'cpu', 1, ?, '{}', 'a', 'b', 1.0)",
        (config,),
    )
    connection.executemany("INSERT INTO layers VALUES ('old', ?, ?, 3)", [(0, "first"), (1, "last")])
    connection.executemany("INSERT INTO layer_grad_norms VALUES ('old', ?, ?, ?)", [(1, 0, 0.5), (1, 1, 2.0), (2, 0, 0.25), (2, 1, 1.0)])
    connection.executemany("INSERT INTO grad_norms VALUES ('old', ?, ?, ?)", [(1, 2.06, 2.06), (2, 1.03, 1.03)])
    connection.commit()
    connection.close()


def test_a_version_1_file_is_read_as_it_is(tmp_path):
    path = tmp_path / "old.db"
    _version_1_file(path)
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:
        assert store.version == 1
        rows = list(store.layer_rows())
        assert [(r["step"], r["layer_name"], r["grad_norm"], r["weight_norm"]) for r in rows][:2] == [(1, "first", 0.5, None), (1, "last", 2.0, None)]
        assert list(store.activation_rows()) == []
        health = store.health(store.runs()[0])
        assert health.first_last == [(0.5, 2.0), (0.25, 1.0)] and health.sites == []
    assert path.read_bytes() == before


def test_opening_a_version_1_file_for_writing_migrates_it_additively(tmp_path, results):
    path = tmp_path / "old.db"
    _version_1_file(path)
    with Store.open(path) as store:
        assert store.version == SCHEMA_VERSION == 6
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == 6
        assert store.live_claims() == {}  # version 3's claims table is there, empty
        store.save(results[0])  # the new tables and columns take the new run
        old = [r for r in store.layer_rows(["old"])]
        assert [(r["step"], r["grad_norm"], r["update_ratio"]) for r in old] == [(1, 0.5, None), (1, 2.0, None), (2, 0.25, None), (2, 1.0, None)]
        assert len(list(store.activation_rows([results[0].cell.key]))) == 18
        assert store.finished_keys() == {"old", results[0].cell.key}
        old_run = store.runs(["old"])[0]
        assert old_run["final_validation_loss"] is None and old_run["final_validation_accuracy"] is None
    with Store.open(path) as store:  # a second open finds nothing to migrate
        assert store.version == 6 and len(store.runs()) == 2


def test_a_migrated_file_has_the_tables_and_columns_of_a_new_one(tmp_path):
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _version_1_file(old)
    Store.open(old).close()
    Store.open(new, create=True).close()
    assert _layout(old) == _layout(new)


def _layout(path: Path) -> dict[str, set[str]]:
    connection = sqlite3.connect(path)
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    shape = {table: {row[1] for row in connection.execute(f"PRAGMA table_info({table})")} for table in tables}
    connection.close()
    return shape


# Version 2 added the statistics tables and grad_norms.clip_fired.
_ADDED_2 = """
CREATE TABLE layer_stats (run_key TEXT NOT NULL, step INTEGER NOT NULL, layer_index INTEGER NOT NULL,
    grad_norm_after_clip REAL, weight_norm REAL, update_ratio REAL, PRIMARY KEY (run_key, step, layer_index)) WITHOUT ROWID;
CREATE TABLE activation_sites (run_key TEXT NOT NULL, site_index INTEGER NOT NULL, site_name TEXT NOT NULL,
    module TEXT NOT NULL, kind TEXT NOT NULL, units INTEGER NOT NULL, PRIMARY KEY (run_key, site_index)) WITHOUT ROWID;
CREATE TABLE activation_stats (run_key TEXT NOT NULL, step INTEGER NOT NULL, site_index INTEGER NOT NULL,
    dead_fraction REAL, saturated_fraction REAL, mean REAL, std REAL, PRIMARY KEY (run_key, step, site_index)) WITHOUT ROWID;
ALTER TABLE grad_norms ADD COLUMN clip_fired INTEGER;
PRAGMA user_version = 2;
"""
# What an intermediate build wrote as version 3: the claims table, but no validation columns.
_PARTIAL_3 = """
CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start TEXT, claimed_at TEXT NOT NULL, heartbeat_at REAL NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 3;
"""
# The rest of version 3: the validation columns (version 4 adds the schedule's).
_REST_OF_3 = """
ALTER TABLE evaluations ADD COLUMN validation_loss REAL;
ALTER TABLE evaluations ADD COLUMN validation_accuracy REAL;
ALTER TABLE runs ADD COLUMN final_validation_loss REAL;
ALTER TABLE runs ADD COLUMN final_validation_accuracy REAL;
"""


# Version 4 added the Jacobians' table, schedules, the chance loss and the literature's statistics.
_ADDED_4 = """
CREATE TABLE jacobian_stats (run_key TEXT NOT NULL, step INTEGER NOT NULL, site_index INTEGER NOT NULL, site_name TEXT NOT NULL,
    sv_mean REAL, sv_min REAL, sv_max REAL, PRIMARY KEY (run_key, step, site_index)) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN schedule TEXT;
ALTER TABLE runs ADD COLUMN chance_loss REAL;
ALTER TABLE evaluations ADD COLUMN lr REAL;
ALTER TABLE layer_stats ADD COLUMN weight_grad_norm REAL;
ALTER TABLE layer_stats ADD COLUMN bias_grad_norm REAL;
ALTER TABLE layer_stats ADD COLUMN output_grad_norm REAL;
ALTER TABLE activation_stats ADD COLUMN pinned_fraction REAL;
ALTER TABLE activation_stats ADD COLUMN output_grad_norm REAL;
INSERT INTO steps VALUES ('old', 1, 0.7, 0.004), ('old', 2, 0.6, 0.005);
PRAGMA user_version = 4;
"""
# Version 5 added the CPU step times.
_ADDED_5 = """
ALTER TABLE steps ADD COLUMN step_cpu_s REAL;
ALTER TABLE runs ADD COLUMN median_step_cpu_s REAL;
PRAGMA user_version = 5;
"""


def _older_file(path: Path, version: str) -> None:
    _version_1_file(path)
    connection = sqlite3.connect(path)
    connection.executescript(
        _ADDED_2 + (_PARTIAL_3 if version in ("partial 3", "3", "4", "5") else "") + (_REST_OF_3 if version in ("3", "4", "5") else "")
        + (_ADDED_4 if version in ("4", "5") else "") + (_ADDED_5 if version == "5" else "")
    )
    connection.close()


@pytest.mark.parametrize("version", ["1", "2", "partial 3", "3", "4", "5"])
def test_opening_for_writing_repairs_whatever_the_current_schema_lacks(tmp_path, results, version):
    path, fresh = tmp_path / "old.db", tmp_path / "new.db"
    if version == "1":
        _version_1_file(path)
    else:
        _older_file(path, version)
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:  # reading leaves it as it is
        assert store.version == int(version[-1])
    assert path.read_bytes() == before
    with Store.open(path) as store:
        store.save(results[0])  # needs every validation and schedule column (failed for "partial 3")
        assert store.runs(["old"])[0]["final_validation_loss"] is None and store.runs(["old"])[0]["schedule"] is None
    Store.open(fresh, create=True).close()
    assert _layout(path) == _layout(fresh)
    with Store.open(path) as store:  # idempotent: a second open finds nothing to add
        assert store.version == SCHEMA_VERSION and len(store.runs()) == 2
    assert _layout(path) == _layout(fresh)


def test_cpu_step_times_are_stored_beside_wall_times(tmp_path, results):
    result = results[0]
    assert len(result.step_cpu_times) == 30
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(result)
        curve = store.curve(result.cell.key)
        assert [row["step_time_s"] for row in curve] == result.step_times
        assert [row["step_cpu_s"] for row in curve] == result.step_cpu_times
        assert store.runs()[0]["median_step_cpu_s"] == statistics.median(result.step_cpu_times)
        assert json.loads(store.runs()[0]["env"])["step_cpu_clock"] == "thread_time"


def test_a_run_without_cpu_times_stores_null(tmp_path, results):
    """A CUDA run times its steps with CUDA events only."""
    event_timed = replace(results[0], step_cpu_times=[])
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(event_timed)
        assert [row["step_cpu_s"] for row in store.curve(event_timed.cell.key)] == [None] * 30
        assert store.runs()[0]["median_step_cpu_s"] is None and store.runs()[0]["median_step_time_s"] is not None


def test_a_version_4_file_reads_no_cpu_times_and_migrates_with_its_rows_null(tmp_path, results):
    path, fresh = tmp_path / "old.db", tmp_path / "new.db"
    _older_file(path, "4")
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:  # read as it is
        assert store.version == 4
        assert store.curve("old") == [
            {"step": 1, "loss": 0.7, "step_time_s": 0.004, "step_cpu_s": None, "loss_scale": None, "skipped": None},
            {"step": 2, "loss": 0.6, "step_time_s": 0.005, "step_cpu_s": None, "loss_scale": None, "skipped": None},
        ]
        assert store.runs()[0]["median_step_cpu_s"] is None
    assert path.read_bytes() == before
    with Store.open(path) as store:
        assert store.version == SCHEMA_VERSION
        store.save(results[0])
        assert [row["step_cpu_s"] for row in store.curve("old")] == [None, None]
        assert [row["step_time_s"] for row in store.curve("old")] == [0.004, 0.005]
        assert store.runs(["old"])[0]["median_step_cpu_s"] is None
        assert [row["step_cpu_s"] for row in store.curve(results[0].cell.key)] == results[0].step_cpu_times
    Store.open(fresh, create=True).close()
    assert _layout(path) == _layout(fresh)


def test_a_version_5_file_reads_as_fp32_eager_and_migrates_with_its_rows_null(tmp_path, results):
    path, fresh = tmp_path / "old.db", tmp_path / "new.db"
    _older_file(path, "5")
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:  # read as it is
        assert store.version == 5
        assert [(row["loss_scale"], row["skipped"]) for row in store.curve("old")] == [(None, None), (None, None)]
        assert store.skipped_steps("old") == []
    assert path.read_bytes() == before
    with Store.open(path) as store:
        assert store.version == SCHEMA_VERSION == 6
        store.save(results[0])
        old = store.runs(["old"])[0]
        assert (old["precision"], old["compile"], old["compile_time_s"], old["skipped_steps"]) == (None, None, None, None)
        new = store.runs([results[0].cell.key])[0]
        assert (new["precision"], new["compile"], new["compile_time_s"], new["skipped_steps"]) == ("fp32", 0, None, None)
        assert [(row["loss_scale"], row["skipped"]) for row in store.curve("old")] == [(None, None), (None, None)]
    Store.open(fresh, create=True).close()
    assert _layout(path) == _layout(fresh)


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

    script = "import sys; from gradbench.store.database import Store; Store.open(sys.argv[1], create=True).close()"
    for attempt in range(12):
        path = tmp_path / f"race{attempt}.db"
        processes = [subprocess.Popen([sys.executable, "-c", script, str(path)], stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        with Store.open(path, readonly=True) as store:
            assert store.runs() == []


def test_a_database_created_while_it_is_read_is_seen_whole_or_not_at_all(tmp_path):
    """Another process may create the schema between the reads of a file's mark and of its
    tables; read one by one, the file would look like another application's."""
    from gradbench.store.database import _identity
    from gradbench.store.schema import APPLICATION_ID, create_schema

    path = tmp_path / "new.db"
    reader = sqlite3.connect(path)
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
    creator = sqlite3.connect(path, timeout=0.2)
    outcome = []

    def create_in_between(statement: str) -> None:
        if statement.startswith("PRAGMA user_version") and not outcome:
            try:
                create_schema(creator)
                outcome.append("created")
            except sqlite3.OperationalError as error:  # the reader's snapshot holds it off
                outcome.append(str(error))

    reader.set_trace_callback(create_in_between)
    application_id, _version, tables = _identity(reader)
    reader.set_trace_callback(None)
    assert outcome, "the creator never ran"
    assert (application_id, tables > 0) in {(0, False), (APPLICATION_ID, True)}, (application_id, tables, outcome)
    reader.close()
    creator.close()


def test_switching_to_wal_waits_for_a_writer_instead_of_failing(tmp_path):
    """SQLite answers "locked" at once, without its busy handler, when the WAL switch meets
    another writer's lock (two processes creating one file hit this): the store waits."""
    import threading

    from gradbench.store.database import _enter_wal_mode

    path = tmp_path / "w.db"
    Store.open(path, create=True).close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    connection = sqlite3.connect(path, timeout=30.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # what SQLite does by itself
        connection.execute("PRAGMA journal_mode = WAL")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    _enter_wal_mode(connection)
    release.join()
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    other.close()


def test_switching_to_wal_gives_up_after_its_patience(tmp_path):
    from gradbench.store.database import _enter_wal_mode

    path = tmp_path / "w.db"
    Store.open(path, create=True).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    connection = sqlite3.connect(path, timeout=30.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _enter_wal_mode(connection, patience_s=0.2)
    other.execute("ROLLBACK")
    connection.close()
    other.close()


def test_fifo_and_device_paths_are_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open(fifo, readonly=True)
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open("/dev/null", create=True)


def test_a_hot_journal_left_by_a_killed_writer_does_not_block_reading(tmp_path, results):
    """Copy a database and its journal mid-transaction, as a SIGKILL would leave them (a file
    written by a gradbench that used a rollback journal rather than WAL)."""
    import shutil

    path = tmp_path / "r.db"
    store = Store.open(path, create=True)
    store.save(results[0])
    store.connection.execute("PRAGMA journal_mode = DELETE")
    store.connection.execute("PRAGMA cache_size = 1")  # make the writer spill to the file
    store.connection.execute("BEGIN IMMEDIATE")
    store.connection.executemany("INSERT INTO steps (run_key, step, loss, step_time_s, step_cpu_s) VALUES (?, ?, ?, ?, ?)", [("zz", i, 0.0, 0.0, 0.0) for i in range(20000)])
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


def test_a_writer_killed_mid_transaction_leaves_a_store_readable_from_a_read_only_directory(tmp_path, results):
    """WAL mode: a SIGKILLed writer leaves -wal and -shm files; a report (read-only, and in a
    directory it cannot write, unless the tests run as root, whom permissions do not stop)
    sees the committed runs and none of the killed transaction."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "r.db"
    with Store.open(path, create=True) as store:
        store.save(results[0])
    writer = f"""
import sys, time
from gradbench.store import Store
store = Store.open({str(path)!r})
store.connection.execute("PRAGMA cache_size = 1")
store.connection.execute("BEGIN IMMEDIATE")
store.connection.executemany("INSERT INTO steps (run_key, step, loss, step_time_s, step_cpu_s) VALUES (?, ?, ?, ?, ?)", [("zz", i, 0.0, 0.0, 0.0) for i in range(20000)])
print("ready", flush=True)
time.sleep(120)
"""
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert Path(str(path) + "-wal").exists()  # WAL mode, left as a kill leaves it
    folder.chmod(0o555)
    try:
        with Store.open(path, readonly=True) as reader:
            assert reader.finished_keys() == {results[0].cell.key}
            assert reader.connection.execute("SELECT count(*) FROM steps WHERE run_key = 'zz'").fetchone()[0] == 0
    finally:
        folder.chmod(0o755)
    with Store.open(path) as store:  # the next writer recovers it and, closing, leaves one file
        assert store.finished_keys() == {results[0].cell.key}
    assert sorted(p.name for p in folder.iterdir()) == ["r.db"]


def test_the_db_file_alone_holds_every_run_once_the_writer_closes_even_beside_a_reader(tmp_path, results):
    """A report open while the last writer closes keeps the file in WAL mode, but the closing
    writer's checkpoint has copied every committed page into the .db: a copy of it alone is whole."""
    import shutil

    path = tmp_path / "r.db"
    writer = Store.open(path, create=True)
    writer.save(results[0])
    reader = Store.open(path, readonly=True)
    assert reader.finished_keys() == {results[0].cell.key}
    writer.close()
    shutil.copy(path, tmp_path / "copy.db")  # the main file only, no -wal
    reader.close()
    with Store.open(tmp_path / "copy.db", readonly=True) as copy:
        assert copy.finished_keys() == {results[0].cell.key}
        assert copy.connection.execute("SELECT count(*) FROM steps").fetchone()[0] == len(results[0].step_times) > 0


def test_a_version_5_file_gains_the_memory_columns_and_its_old_runs_read_null(tmp_path, results):
    path = tmp_path / "old.db"
    _older_file(path, "5")
    with Store.open(path, readonly=True) as store:  # read as it is: the old run has no memory costs
        assert store.version == 5
        assert store.runs(["old"])[0]["optimizer_state_bytes"] is None
    with Store.open(path) as store:
        assert store.version == 6
        store.save(results[0])
        old, new = store.runs(["old"])[0], store.runs([results[0].cell.key])[0]
        assert old["optimizer_state_bytes"] is None and old["peak_memory_bytes"] is None
        assert new["optimizer_state_bytes"] == results[0].optimizer_state_bytes == 0  # plain SGD keeps no state
        assert isinstance(new["optimizer_state_bytes"], int) and new["peak_memory_bytes"] is None  # a CPU run
