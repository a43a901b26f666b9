"""What the reproductions' tests share: one smoke run of a reproduction through the command
line, its checks, and plain-SQLite reads to recompute a measure without gradbench."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path

from gradbench.cli import main
from gradbench.reproduce import catalog
from gradbench.reproduce.evidence import Evidence
from gradbench.store.database import Store


def smoke_run(folder: Path, name: str) -> tuple[Path, int, str]:
    """``gradbench reproduce NAME --smoke`` into ``folder`` (the store ``smoke.db``, the table
    and figure under ``out/``): (the store, the exit code, what it printed)."""
    db = folder / "smoke.db"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = main(["reproduce", name, "--smoke", "--db", str(db), "--output", str(folder / "out"), "--no-progress"])
    return db, code, printed.getvalue()


def check_smoke(smoke: tuple[Path, int, str], name: str, *shown: str) -> None:
    """The smoke run judged every claim (exit 0 or 1, not 2), printed the table with ``shown``
    in it, and wrote the same table and a figure."""
    db, code, printed = smoke
    assert code in (0, 1), printed
    assert "| claim | published | source | measured (mean +- std over seeds) | band | verdict |" in printed
    assert all(text in printed for text in shown), [text for text in shown if text not in printed]
    table, figure = db.parent / "out" / f"{name}.smoke.md", db.parent / "out" / f"{name}.smoke.png"
    assert table.read_text(encoding="utf-8") in printed
    assert figure.read_bytes().startswith(b"\x89PNG")


def tiny_run(folder: Path, name: str, overrides: dict) -> tuple[Path, Evidence]:
    """A reproduction's default suite with ``overrides`` (seconds of training) run into
    ``folder``: (the store, the evidence of those cells, on a store left open read-only)."""
    from gradbench.grid.expansion import expand
    from gradbench.sweep.driver import run_sweep

    db = folder / f"{name}.db"
    cells = expand(catalog.suite_of(catalog.get(name)).with_overrides(overrides))
    with Store.open(db, create=True) as store:
        run_sweep(cells, store, progress=False)
    return db, Evidence(Store.open(db, readonly=True), cells)


def sql(db: Path, query: str, *parameters: object) -> list[tuple]:
    """Rows of ``query`` on the store at ``db``, read with plain sqlite3."""
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query, parameters).fetchall()
    finally:
        connection.close()
