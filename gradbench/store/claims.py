"""Claims: which sweep is running which cell right now.

Before a sweep hands a cell to its executor it claims the cell in the store (one short
transaction; ``Store.claim``); storing the result deletes the claim in the transaction that
stores the run. So two sweeps on one store never run the same cell, and a sweep killed at any
moment (SIGKILL included) leaves claims that the next sweep recognises as stale and takes over:
the cell that was half-trained is trained again, once.

A claim names its owner: a random id per sweep, the host name, the driver's pid, and where and
when that process started (the machine's boot id, its pid namespace, the start time: a pid
reused by a later process, or the same pid in another container, is not mistaken for the
owner). A claim is *live* while its owner runs: from the same boot and pid namespace, while
that very process exists (checked directly, no timeout); from anywhere else (another
container, another machine sharing the file), while its heartbeat, refreshed every
``HEARTBEAT_S`` by the owner, is younger than ``LEASE_S``. SQLite's locking is only reliable
on a local file system, so several writers belong on one machine; the heartbeat is for
containers and for safety, not an invitation to share a store over NFS.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Claimant", "Heartbeat", "HEARTBEAT_S", "LEASE_S", "is_live", "machine_id", "process_start"]

HEARTBEAT_S = 30.0
LEASE_S = 300.0  # ten missed heartbeats: the owner on another host is gone


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); ``None`` elsewhere or if
    there is no such process. Together with the pid it names one process for the machine's uptime."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
        return fields[19]  # field 22 of proc(5), counted after the name's closing parenthesis
    except (OSError, IndexError):
        return None


def machine_id() -> str:
    """This boot of this machine, and this process's pid namespace: where pids mean the same
    thing (empty where Linux's /proc does not say)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as boot:
            boot_id = boot.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot_id}:{namespace}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Claimant:
    """The sweep that claims cells: ``owner`` is unique to it."""

    owner: str
    host: str
    pid: int
    pid_start: str | None

    @classmethod
    def current(cls) -> Claimant:
        pid = os.getpid()
        return cls(owner=uuid.uuid4().hex, host=socket.gethostname(), pid=pid, pid_start=f"{machine_id()}/{process_start(pid) or ''}")

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def is_live(host: str, pid: int, pid_start: str | None, heartbeat_at: float, now: float | None = None) -> bool:
    """Whether the claim's owner is still running (see the module docstring). ``pid_start`` is
    ``MACHINE/START`` (``machine_id()``, ``process_start()``)."""
    where, _, started = (pid_start or "").rpartition("/")
    if host == socket.gethostname() and where == machine_id():
        if not _pid_exists(pid):
            return False
        return not started or process_start(pid) in (None, started)
    return (time.time() if now is None else now) - heartbeat_at < LEASE_S


class Heartbeat:
    """Refreshes a claimant's claims every ``HEARTBEAT_S`` from a thread of its own (with its own
    connection), so claims stay live from other hosts' point of view while a long cell runs."""

    def __init__(self, path: Path, claimant: Claimant, interval: float = HEARTBEAT_S) -> None:
        self._path, self._claimant, self._interval = path, claimant, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="gradbench-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        connection = sqlite3.connect(self._path, timeout=30.0)
        try:
            while not self._stop.wait(self._interval):
                try:
                    with connection:
                        connection.execute("UPDATE claims SET heartbeat_at = ? WHERE owner = ?", (time.time(), self._claimant.owner))
                except sqlite3.Error:  # a missed beat is retried at the next one
                    pass
        finally:
            connection.close()
