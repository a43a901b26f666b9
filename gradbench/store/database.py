"""The SQLite store: runs with their config, metrics and environment; curves; per-layer norms.

One file (default ``gradbench.db``). A run's rows are written in one transaction, so a cell is
in the store completely or not at all: a sweep killed at any moment resumes by skipping the
keys already here, with nothing lost and nothing duplicated. A run is *finished* once stored,
whatever its status (``done``, ``diverged`` or ``failed``); ``finished_keys`` is what a rerun
skips.

Several sweeps may write one store at once (two ``gradbench run`` commands, or a driver and
its heartbeat): writers open it in WAL mode with a busy timeout, and a cell is claimed
(``claim``; ``gradbench.store.claims``) before it runs, so no cell runs twice. When the last writer
closes, its committed pages are copied into the main file (a checkpoint, which works beside
readers), and, unless a reader still has the file open, the file goes back to a plain rollback
journal: one file that read-only users (reports on a read-only copy) can open.

The file is marked with SQLite's ``application_id`` so that any other file, SQLite or not, is
refused with a clear message instead of being written to.

The tables, their versions and the migration of older files are in ``gradbench.store.schema``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gradbench.monitor.diagnosis import RunHealth
from gradbench.monitor.history import ActivationSite, MonitorHistory, NonFinite
from gradbench.store.claims import Claimant, is_live
from gradbench.store.schema import (
    ACTIVATION_STATISTICS, APPLICATION_ID, CHILD_TABLES, LAYER_STATISTICS, METRIC_COLUMNS, SCHEMA_VERSION, STATISTIC_ADDED_IN, create_schema, migrate,
)

if TYPE_CHECKING:  # a type only: the store reads and writes without torch
    from gradbench.run.result import RunResult

__all__ = ["Store", "StoreError", "DEFAULT_DB", "METRIC_COLUMNS", "LAYER_STATISTICS", "ACTIVATION_STATISTICS"]

DEFAULT_DB = "gradbench.db"


class StoreError(ValueError):
    """The database cannot be used: missing, not a gradbench database, or too new."""


def _finite(value: float | None) -> float | None:
    """SQLite stores NaN as NULL anyway; infinities are kept (they mean overflow)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _padded(rows: list[Any], steps: list[int]) -> list[Any]:
    """``rows`` as long as ``steps``, ``None`` rows for steps a history made elsewhere (a
    plugin's, an older pickle) did not record."""
    return list(rows) + [None] * (len(steps) - len(rows))


def _check_existing(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as error:
        raise StoreError(f"cannot read database {str(path)!r}: {error.strerror}") from None
    if header and header != b"SQLite format 3\x00":
        raise StoreError(f"{str(path)!r} is not a gradbench database (not an SQLite file); choose another --db path")


def _connect(path: Path, readonly: bool, new: bool = False) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode={'ro' if readonly else 'rwc'}"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=30.0)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.DatabaseError as error:
        if readonly and "readonly" in str(error) and os.access(path, os.W_OK):
            # A hot journal left by a killed writer: a read-write open rolls it back (what
            # SQLite does on any write open); then read-only as asked.
            sqlite3.connect(uri.replace("mode=ro", "mode=rw"), uri=True, timeout=30.0).execute("SELECT count(*) FROM sqlite_master").fetchone()
            return _connect(path, readonly)
        if new:  # nothing was there to be the wrong kind of file: the directory refused it
            raise StoreError(f"cannot create database {str(path)!r}: {error}; choose another --db path") from None
        raise StoreError(f"{str(path)!r} is not a gradbench database ({error})") from None


def _identity(connection: sqlite3.Connection) -> tuple[int, int, int]:
    """(application_id, user_version, number of schema objects), read in one transaction: read
    one by one, another process creating the file in between could show its tables without
    its mark, a file that looks like another application's."""
    connection.execute("BEGIN")
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    finally:
        connection.execute("COMMIT")
    return application_id, version, tables


def _enter_wal_mode(connection: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Switch the file to WAL mode. The switch needs the file to itself for a moment, and SQLite
    answers "database is locked" at once rather than calling the busy handler when another
    process holds it (one creating or closing the same file): so wait here, as long as the
    busy timeout would have."""
    deadline = time.monotonic() + patience_s
    pause = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class Store:
    """A gradbench SQLite database. Use ``Store.open``; close it, or use it as a context manager."""

    def __init__(self, connection: sqlite3.Connection, path: Path, version: int = SCHEMA_VERSION, writable: bool = False) -> None:
        self.connection = connection
        self.path = path
        self.version = version  # a read-only older file keeps its version
        self.writable = writable

    @classmethod
    def open(cls, path: str | Path = DEFAULT_DB, *, create: bool = False, readonly: bool = False) -> Store:
        """Open the database at ``path``.

        Args:
            path: The database file.
            create: Create the file if it does not exist (only ``gradbench run`` does).
            readonly: Open read-only (reports), so nothing can be written by accident.

        Raises:
            StoreError: if the file is missing (and ``create`` is false), is not a regular file,
                is not a gradbench database, was made by a newer gradbench, or (unless
                ``readonly``) cannot be written.
        """
        path = Path(path)
        exists = path.exists()
        if exists and not path.is_file():  # a directory, a FIFO (would block), a device
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise StoreError(f"database path {str(path)!r} is {kind}; give a file path with --db")
        if not exists and not create:
            raise StoreError(f"no gradbench database at {str(path)!r}; run 'gradbench run --db {path}' first")
        if not exists and not path.parent.is_dir():
            raise StoreError(f"cannot create database {str(path)!r}: directory {str(path.parent)!r} does not exist")
        if not exists and not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"cannot create database {str(path)!r}: directory {str(path.parent)!r} is not writable; choose another --db path")
        if exists:
            _check_existing(path)
        if readonly and (not exists or path.stat().st_size == 0):
            raise StoreError(f"no gradbench database at {str(path)!r} (the file is empty)")
        connection = _connect(path, readonly, new=not exists)
        try:
            application_id, version, tables = _identity(connection)
            if tables == 0 and application_id == 0 and not readonly:
                create_schema(connection)
                application_id, version, tables = _identity(connection)
            if application_id != APPLICATION_ID:
                raise StoreError(f"{str(path)!r} is not a gradbench database (an SQLite file of another application); choose another --db path")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{str(path)!r} was written by a newer gradbench (schema {version} > {SCHEMA_VERSION}); upgrade gradbench")
            if not readonly:
                # Repair whatever the current schema lacks, whatever the version says; its write
                # transaction also fails now, before anything trains, if the file cannot be written.
                migrate(connection)
                version = SCHEMA_VERSION
                # Readers never block the writer, and several writers take turns (busy timeout).
                _enter_wal_mode(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StoreError(f"cannot use database {str(path)!r}: {error}") from None
        except StoreError:
            connection.close()
            raise
        connection.row_factory = sqlite3.Row
        return cls(connection, path, version, writable=not readonly)

    def close(self) -> None:
        if self.writable:
            # The last writer to close turns the file back into one self-contained file; while
            # another connection is open this fails at once (no busy wait) and that one does it.
            try:
                self.connection.execute("PRAGMA busy_timeout = 0")
                # Copy every committed page into the main file first: that works beside readers,
                # so the .db alone holds every stored run even when the switch below cannot.
                self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.connection.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.Error:
                pass
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """One transaction that takes the write lock at once (waiting its turn behind other
        writers), so that what it reads cannot change before it writes."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def claim(self, key: str, claimant: Claimant, *, retry_failed_before: datetime | None = None) -> str | None:
        """Claim cell ``key`` for ``claimant`` before running it.

        Args:
            key: The cell.
            claimant: The sweep claiming it.
            retry_failed_before: Also claim a cell stored as ``failed`` if it finished before
                this time (the retrying sweep's start): a failure stored since then is another
                sweep's retry, not to be run a second time.

        Returns:
            ``None`` if the cell is now claimed (a stale claim is taken over); otherwise why
            not: ``"stored"`` (finished meanwhile, and not a failed run to retry) or
            ``"running"`` (live-claimed by another sweep).
        """
        with self._write_transaction():
            stored = self.connection.execute("SELECT status, finished_at FROM runs WHERE key = ?", (key,)).fetchone()
            if stored is not None and not (
                retry_failed_before is not None and stored[0] == "failed" and datetime.fromisoformat(stored[1]) < retry_failed_before
            ):
                return "stored"
            held = self.connection.execute("SELECT owner, host, pid, pid_start, heartbeat_at FROM claims WHERE key = ?", (key,)).fetchone()
            if held is not None and held[0] != claimant.owner and is_live(*held[1:]):
                return "running"
            self.connection.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, datetime('now'), ?)",
                (key, claimant.owner, claimant.host, claimant.pid, claimant.pid_start, time.time()),
            )
        return None

    def release(self, claimant: Claimant) -> None:
        """Drop every claim of ``claimant`` (a sweep that stops early, e.g. on Ctrl-C)."""
        with self._write_transaction():
            self.connection.execute("DELETE FROM claims WHERE owner = ?", (claimant.owner,))

    def live_claims(self) -> dict[str, str]:
        """Cells being run right now by a live sweep: key -> ``pid N on HOST``."""
        if self.version < 3:
            return {}
        rows = self.connection.execute("SELECT key, host, pid, pid_start, heartbeat_at FROM claims").fetchall()
        return {row[0]: f"pid {row[2]} on {row[1]}" for row in rows if is_live(*row[1:])}

    def save(self, result: RunResult) -> None:
        """Write one run and all its rows in a single transaction (replacing an older copy)."""
        cell, key = result.cell, result.cell.key
        metrics = result.metrics()
        nonfinite = result.nonfinite
        history = result.history
        row: dict[str, Any] = {
            "key": key,
            "status": result.status,
            "label": cell.label,
            "task": cell.task_label,
            "task_knobs": json.dumps(dict(cell.task_knobs), sort_keys=True),
            "optimizer": cell.optimizer,
            "hyperparameters": json.dumps(cell.config()["hyperparameters"], sort_keys=True),
            "lr": cell.lr,
            "activation": cell.activation,
            "init": cell.init,
            "clip": cell.clip,
            "seed": cell.seed,
            "steps": cell.steps,
            "batch_size": cell.batch_size,
            "device": cell.device,
            "threads": cell.threads,
            "config": json.dumps(cell.config(), sort_keys=True),
            "metric": result.metric,
            "target": result.target,
            **{name: _finite(metrics[name]) for name in METRIC_COLUMNS},
            "nonfinite_step": nonfinite.step if nonfinite else None,
            "nonfinite_quantity": nonfinite.quantity if nonfinite else None,
            "nonfinite_layer": nonfinite.layer if nonfinite else None,
            "error": result.error,
            "env": json.dumps(result.env, sort_keys=True),
            "started_at": result.started_at,
            "finished_at": result.finished_at,
            "wall_time_s": result.wall_time_s,
            "schedule": cell.schedule,
            "chance_loss": _finite(result.chance_loss),
            "precision": cell.precision,
            "compile": int(cell.compile),
            "compile_time_s": result.compile_time_s,
            "skipped_steps": len(history.skipped_steps) if history and history.scale_steps else None,
        }
        with self._write_transaction():  # all of the run or none of it, and its claim gone
            self.connection.execute("DELETE FROM claims WHERE key = ?", (key,))
            for table in CHILD_TABLES:
                self.connection.execute(f"DELETE FROM {table} WHERE run_key = ?", (key,))
            self.connection.execute("DELETE FROM runs WHERE key = ?", (key,))
            columns = ", ".join(row)
            self.connection.execute(f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
            losses = dict(zip(history.loss_steps, history.losses)) if history else {}
            cpu_times = result.step_cpu_times
            scales = dict(zip(history.scale_steps, history.loss_scales)) if history else {}
            skipped = set(history.skipped_steps) if history else set()
            step_rows = [
                (
                    key, step, _finite(losses.get(step)), seconds, cpu_times[step - 1] if step <= len(cpu_times) else None,
                    _finite(scales.get(step)), (int(step in skipped) if step in scales else None),
                )
                for step, seconds in enumerate(result.step_times, start=1)
            ]
            self.connection.executemany(
                "INSERT INTO steps (run_key, step, loss, step_time_s, step_cpu_s, loss_scale, skipped) VALUES (?, ?, ?, ?, ?, ?, ?)", step_rows
            )
            self.connection.executemany(
                "INSERT INTO evaluations (run_key, step, train_loss, test_loss, test_accuracy, train_time_s, validation_loss, validation_accuracy, lr)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (key, e.step, _finite(e.train_loss), _finite(e.test_loss), e.test_accuracy, e.train_time_s, _finite(e.validation_loss), e.validation_accuracy, e.lr)
                    for e in result.evaluations
                ],
            )
            if history:
                self.connection.executemany(
                    "INSERT INTO layers VALUES (?, ?, ?, ?)",
                    [(key, index, name, size) for index, (name, size) in enumerate(zip(history.layer_names, result.num_params))],
                )
                self.connection.executemany(
                    "INSERT INTO layer_grad_norms VALUES (?, ?, ?, ?)",
                    [
                        (key, step, index, _finite(norm))
                        for step, norms in zip(history.grad_steps, history.layer_grad_norms)
                        for index, norm in enumerate(norms)
                    ],
                )
                self.connection.executemany(
                    "INSERT INTO grad_norms VALUES (?, ?, ?, ?, ?)",
                    [
                        (key, step, _finite(before), _finite(after), fired)
                        for step, before, after, fired in zip(history.grad_steps, history.total_norm_before, history.total_norm_after, history.clip_fired)
                    ],
                )
                self._save_statistics(key, history)
            self.connection.executemany(
                "INSERT INTO jacobian_stats VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (key, step, index, spectrum.site, _finite(spectrum.mean), _finite(spectrum.minimum), _finite(spectrum.maximum))
                    for step, index, spectrum in result.jacobians
                    if spectrum is not None
                ],
            )

    def _save_statistics(self, key: str, history: MonitorHistory) -> None:
        """The schema-2 rows: per-layer statistics beyond the gradient norm, activation sites
        and their statistics (inside ``save``'s transaction)."""
        layer_rows = []
        records = zip(
            history.grad_steps, history.layer_grad_norms_after, history.layer_weight_norms, history.layer_update_ratios,
            _padded(history.layer_weight_grad_norms, history.grad_steps), _padded(history.layer_bias_grad_norms, history.grad_steps),
            _padded(history.layer_output_grad_norms, history.grad_steps),
        )
        for step, after, weights, ratios, weight_grads, bias_grads, output_grads in records:
            for index, norm in enumerate(after):
                extra = [row[index] if row is not None else None for row in (weights, ratios, weight_grads, bias_grads, output_grads)]
                layer_rows.append((key, step, index, _finite(norm), *(_finite(value) for value in extra)))
        columns = ", ".join(("run_key", "step", "layer_index", *LAYER_STATISTICS))
        self.connection.executemany(f"INSERT INTO layer_stats ({columns}) VALUES ({', '.join('?' * (3 + len(LAYER_STATISTICS)))})", layer_rows)
        self.connection.executemany(
            "INSERT INTO activation_sites VALUES (?, ?, ?, ?, ?, ?)",
            [(key, index, site.name, site.module, site.kind, site.units) for index, site in enumerate(history.activation_sites)],
        )
        columns = ", ".join(("run_key", "step", "site_index", *ACTIVATION_STATISTICS))
        records = zip(
            history.activation_steps, history.dead_fraction, history.saturated_fraction, history.activation_mean, history.activation_std,
            _padded(history.pinned_fraction, history.activation_steps), _padded(history.activation_output_grad_norms, history.activation_steps),
        )
        self.connection.executemany(
            f"INSERT INTO activation_stats ({columns}) VALUES ({', '.join('?' * (3 + len(ACTIVATION_STATISTICS)))})",
            [
                (key, step, index, *(_finite(row[index]) if row is not None else None for row in (dead, saturated, means, stds, pinned, gradients)))
                for step, dead, saturated, means, stds, pinned, gradients in records
                for index in range(len(means))
            ],
        )

    # -- reading ---------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        """Status of every stored run, by key."""
        return {row[0]: row[1] for row in self.connection.execute("SELECT key, status FROM runs")}

    def resolve_key(self, text: str) -> str:
        """The run key ``text`` is, or uniquely begins.

        Raises:
            StoreError: for no such run, or a prefix of several.
        """
        keys = [row[0] for row in self.connection.execute("SELECT key FROM runs WHERE substr(key, 1, ?) = ? ORDER BY key", (len(text), text))]
        if not keys:
            raise StoreError(f"no run {text!r} in {str(self.path)!r}; 'gradbench export --what runs' lists the keys")
        if len(keys) > 1 and text not in keys:
            shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
            raise StoreError(f"run prefix {text!r} matches {len(keys)} runs ({shown}); give more of the key")
        return text if text in keys else keys[0]

    def finished_keys(self) -> set[str]:
        """Keys of every stored run (done, diverged or failed): what a rerun skips."""
        return {row[0] for row in self.connection.execute("SELECT key FROM runs")}

    def runs(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Run rows as dicts, in insertion order, optionally only those with ``keys``. Every
        ``METRIC_COLUMNS`` name is a key, ``None`` where an older file (read as it is) lacks it."""
        rows = [dict(row) for row in self.connection.execute("SELECT * FROM runs ORDER BY rowid")]
        for row in rows:
            for name in METRIC_COLUMNS:
                row.setdefault(name, None)
        if keys is not None:
            wanted = set(keys)
            rows = [row for row in rows if row["key"] in wanted]
        return rows

    def _statistic(self, table: str, name: str) -> str:
        """``table.name``, or ``NULL AS name`` in a file older than the statistic."""
        return f"{table}.{name}" if self.version >= STATISTIC_ADDED_IN.get(name, 2) else f"NULL AS {name}"

    def _rows_of(self, query: str, key_column: str, keys: Iterable[str] | None) -> Iterator[dict[str, Any]]:
        """The rows of ``query`` (with a ``{where}`` slot) for the runs ``keys`` (all: ``None``).
        A few keys are selected by the index, in SQL (a claim reads one run at a time); many,
        by a scan filtered here (SQLite bounds the number of parameters)."""
        wanted = list(dict.fromkeys(keys)) if keys is not None else None
        if wanted is not None and len(wanted) <= 500:
            clause = f"WHERE {key_column} IN ({', '.join('?' * len(wanted))})"
            yield from (dict(row) for row in self.connection.execute(query.format(where=clause), wanted))
            return
        chosen = set(wanted) if wanted is not None else None
        for row in self.connection.execute(query.format(where="")):
            if chosen is None or row[0] in chosen:
                yield dict(row)

    def layer_rows(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Long-format per-layer statistics: run key, step, layer index, layer name, gradient
        norm (before clipping), then ``LAYER_STATISTICS`` (``None`` where not recorded)."""
        statistics = ", ".join(self._statistic("s", name) for name in LAYER_STATISTICS)
        join = "LEFT JOIN layer_stats AS s ON s.run_key = g.run_key AND s.step = g.step AND s.layer_index = g.layer_index" if self.version >= 2 else ""
        query = f"""
            SELECT g.run_key, g.step, g.layer_index, l.layer_name, g.grad_norm, {statistics}
            FROM layer_grad_norms AS g
            JOIN layers AS l ON l.run_key = g.run_key AND l.layer_index = g.layer_index
            {join}
            {{where}}
            ORDER BY g.run_key, g.step, g.layer_index
        """
        yield from self._rows_of(query, "g.run_key", keys)

    def layer_grad_matrix(self, key: str) -> tuple[list[str], list[int], list[list[float | None]]]:
        """One run's per-layer gradient norms (before clipping) as a matrix: the layer names
        (input to output), the recorded steps, and ``norms[step_index][layer_index]``."""
        names = [row[0] for row in self.connection.execute("SELECT layer_name FROM layers WHERE run_key = ? ORDER BY layer_index", (key,))]
        rows: dict[int, list[float | None]] = {}
        query = "SELECT step, layer_index, grad_norm FROM layer_grad_norms WHERE run_key = ? ORDER BY step, layer_index"
        for step, index, norm in self.connection.execute(query, (key,)):
            rows.setdefault(step, [None] * len(names))[index] = norm
        return names, list(rows), list(rows.values())

    def grad_norm_rows(self, keys: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Global gradient norms of the runs ``keys``: run key, step, norm before and after
        clipping, whether clipping fired (``None`` where not recorded: schema-1 files)."""
        fired = "clip_fired" if self.version >= 2 else "NULL AS clip_fired"
        for key in keys:
            query = f"SELECT run_key, step, norm_before_clip, norm_after_clip, {fired} FROM grad_norms WHERE run_key = ? ORDER BY step"
            yield from (dict(row) for row in self.connection.execute(query, (key,)))

    def jacobian_rows(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """The layer Jacobians' singular values: run key, step, site index, site name, their
        mean, minimum and maximum (none in a file older than schema 4)."""
        if self.version < 4:
            return
        yield from self._rows_of("SELECT * FROM jacobian_stats {where} ORDER BY run_key, step, site_index", "run_key", keys)

    def activation_rows(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Long-format activation statistics: run key, step, site index, site name, module,
        kind, units, then ``ACTIVATION_STATISTICS``."""
        if self.version < 2:
            return
        query = f"""
            SELECT a.run_key, a.step, a.site_index, s.site_name, s.module, s.kind, s.units, {", ".join(self._statistic("a", name) for name in ACTIVATION_STATISTICS)}
            FROM activation_stats AS a
            JOIN activation_sites AS s ON s.run_key = a.run_key AND s.site_index = a.site_index
            {{where}}
            ORDER BY a.run_key, a.step, a.site_index
        """
        yield from self._rows_of(query, "a.run_key", keys)

    def health(self, run: Mapping[str, Any]) -> RunHealth:
        """What ``gradbench.monitor.diagnosis`` reads, for one run row (``runs()``)."""
        key = run["key"]
        names = [row[0] for row in self.connection.execute("SELECT layer_name FROM layers WHERE run_key = ? ORDER BY layer_index", (key,))]
        nonfinite = None
        if run["nonfinite_step"] is not None:
            nonfinite = NonFinite(run["nonfinite_step"], run["nonfinite_quantity"], run["nonfinite_layer"])
        health = RunHealth(layer_names=names, nonfinite=nonfinite, chance_loss=run.get("chance_loss"))
        health.losses = [loss for (loss,) in self.connection.execute("SELECT loss FROM steps WHERE run_key = ? AND loss IS NOT NULL ORDER BY step", (key,))]
        initial = self.connection.execute("SELECT train_loss FROM evaluations WHERE run_key = ? AND step = 0", (key,)).fetchone()
        health.initial_loss = initial[0] if initial is not None else None

        def number(value: float | None) -> float:
            return math.nan if value is None else value

        if names:
            last = len(names) - 1
            by_step: dict[int, list[float]] = {}
            query = "SELECT step, layer_index, grad_norm FROM layer_grad_norms WHERE run_key = ? AND layer_index IN (0, ?) ORDER BY step, layer_index"
            for step, index, norm in self.connection.execute(query, (key, last)):
                by_step.setdefault(step, [math.nan, math.nan])[0 if index == 0 else 1] = number(norm)
            health.grad_steps = list(by_step)
            health.first_last = [(pair[0], pair[1]) for pair in by_step.values()]
            totals = dict(self.connection.execute("SELECT step, norm_before_clip FROM grad_norms WHERE run_key = ?", (key,)).fetchall())
            health.total_norms = [number(totals.get(step)) for step in health.grad_steps]
        if self.version >= 2:
            query = "SELECT site_name, module, kind, units FROM activation_sites WHERE run_key = ? ORDER BY site_index"
            health.sites = [ActivationSite(*row) for row in self.connection.execute(query, (key,))]
            rows: dict[int, tuple[list[float | None], list[float | None], list[float | None]]] = {}
            pinned = self._statistic("activation_stats", "pinned_fraction")
            query = f"SELECT step, site_index, dead_fraction, saturated_fraction, {pinned} FROM activation_stats WHERE run_key = ? ORDER BY step, site_index"
            for step, index, dead, saturated, pinned_fraction in self.connection.execute(query, (key,)):
                row = rows.setdefault(step, ([None] * len(health.sites), [None] * len(health.sites), [None] * len(health.sites)))
                row[0][index], row[1][index], row[2][index] = dead, saturated, pinned_fraction
            health.activation_steps = list(rows)
            health.dead = [row[0] for row in rows.values()]
            health.saturated = [row[1] for row in rows.values()]
            health.pinned = [row[2] for row in rows.values()]
        return health

    def _step_columns(self) -> str:
        """A step's columns after its number, NULL where this file's schema predates them."""
        cpu = "step_cpu_s" if self.version >= 5 else "NULL AS step_cpu_s"
        scaler = "loss_scale, skipped" if self.version >= 6 else "NULL AS loss_scale, NULL AS skipped"
        return f"loss, step_time_s, {cpu}, {scaler}"

    def curve(self, key: str) -> list[dict[str, Any]]:
        """One run's steps: step, loss, wall (or CUDA-event) step time, CPU step time (``None``
        on CUDA and in files older than schema 5), and under a loss scaler the scale and whether
        the step was skipped (``None`` without one and in files older than schema 6)."""
        query = f"SELECT step, {self._step_columns()} FROM steps WHERE run_key = ? ORDER BY step"
        return [dict(row) for row in self.connection.execute(query, (key,))]

    def evaluation_rows(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every run's evaluations, long format: run key, step, then the evaluation columns
        (train, test and validation metrics, training time so far, learning rate)."""
        wanted = set(keys) if keys is not None else None
        for row in self.connection.execute("SELECT * FROM evaluations ORDER BY run_key, step"):
            if wanted is None or row[0] in wanted:
                yield dict(row)

    def step_rows(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every run's steps, long format: run key, step, mini-batch loss, wall (or CUDA-event)
        step time, CPU step time (``None`` on CUDA and in files older than schema 5), and under
        a loss scaler the step's scale and whether it was skipped (``None`` without one and in
        files older than schema 6)."""
        wanted = set(keys) if keys is not None else None
        for row in self.connection.execute(f"SELECT run_key, step, {self._step_columns()} FROM steps ORDER BY run_key, step"):
            if wanted is None or row[0] in wanted:
                yield dict(row)

    def skipped_steps(self, key: str) -> list[int]:
        """The steps a run's loss scaler skipped (empty without one, or in files older than schema 6)."""
        if self.version < 6:
            return []
        return [row[0] for row in self.connection.execute("SELECT step FROM steps WHERE run_key = ? AND skipped = 1 ORDER BY step", (key,))]

    def evaluations(self, key: str) -> list[dict[str, Any]]:
        return [dict(row) for row in self.connection.execute("SELECT * FROM evaluations WHERE run_key = ? ORDER BY step", (key,))]
