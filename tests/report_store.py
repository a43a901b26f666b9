"""The small store the report, plot and HTML tests read, made once per session by the CLI,
and helpers that compute what the tables should say straight from SQLite."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

from gradbench.cli import main

MLP = "mnist1d_mlp[depth=2,width=8,num_samples=1000]"
# Two tasks x two optimizers x two learning rates x two activations x two seeds, with a
# validation split; then sgd at lr 0.1 again with clipping (so tables split by clip).
GRID = ["--task", f"linreg,{MLP}", "--optimizer", "sgd,adam", "--lr", "0.01,0.1", "--activation", "sigmoid,relu", "--seeds", "0,1"]
CLIPPED = ["--task", MLP, "--optimizer", "sgd", "--lr", "0.1", "--activation", "sigmoid,relu", "--seeds", "0,1", "--clip", "norm:0.05"]
SETTINGS = ["--steps", "20", "--eval-every", "5", "--record-every", "2", "--validation", "0.2", "--no-progress"]


def make_store(path: Path) -> Path:
    for grid in (GRID, CLIPPED):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["run", *grid, *SETTINGS, "--db", str(path)])
        assert code == 0
    return path


def copy_store(source: Path, target: Path, edit: Callable[[sqlite3.Connection], None] | None = None) -> Path:
    """A copy of the store, optionally edited with plain SQL (crafted rows)."""
    shutil.copy(source, target)
    if edit is not None:
        connection = sqlite3.connect(target)
        edit(connection)
        connection.commit()
        connection.close()
    return target


def sql_groups(path: Path, column: str, where: str = "1") -> dict[tuple, dict]:
    """Runs grouped by everything but the seed, straight from SQLite: (task, optimizer, lr,
    activation, clip) -> the done runs' values of ``column``, and the status counts."""
    connection = sqlite3.connect(path)
    groups: dict[tuple, dict] = {}
    query = f"SELECT task, optimizer, lr, activation, clip, status, {column} FROM runs WHERE {where}"
    for task, optimizer, lr, activation, clip, status, value in connection.execute(query):
        group = groups.setdefault((task, optimizer, lr, activation, clip), {"values": [], "statuses": []})
        group["statuses"].append(status)
        if status == "done" and value is not None:
            group["values"].append(value)
    connection.close()
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def keys_of(path: Path, where: str) -> Iterator[str]:
    connection = sqlite3.connect(path)
    yield from (row[0] for row in connection.execute(f"SELECT key FROM runs WHERE {where} ORDER BY key"))
    connection.close()


def config_of(path: Path, key: str) -> dict:
    connection = sqlite3.connect(path)
    (text,) = connection.execute("SELECT config FROM runs WHERE key = ?", (key,)).fetchone()
    connection.close()
    return json.loads(text)
