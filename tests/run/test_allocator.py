"""The allocator's settings: glibc's mmap and trim thresholds, set once, recorded with each run."""

from __future__ import annotations

import ctypes
import platform

import pytest

from gradbench.grid import expand, parse_suite
from gradbench.run import allocator, run_cell
from gradbench.run.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, keep_freed_memory


class _Mallopt:
    """``mallopt`` as ctypes gives it (a function with ``argtypes``), recording its calls."""

    def __init__(self, accepts: bool) -> None:
        self.calls: list[tuple[int, int]] = []
        self.accepts = accepts

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1 if self.accepts else 0


class _FakeLibc:
    """A C library whose ``mallopt`` records its calls; glibc's, or another without
    ``gnu_get_libc_version``."""

    def __init__(self, glibc: bool = True, accepts: bool = True) -> None:
        self.mallopt = _Mallopt(accepts)
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

    @property
    def calls(self) -> list[tuple[int, int]]:
        return self.mallopt.calls


@pytest.fixture
def fresh():
    keep_freed_memory.cache_clear()
    yield
    keep_freed_memory.cache_clear()
    keep_freed_memory()  # as the rest of the process had it


def _with_libc(monkeypatch, libc: _FakeLibc) -> None:
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)


def test_both_thresholds_are_raised_once_per_process(fresh, monkeypatch):
    libc = _FakeLibc()
    _with_libc(monkeypatch, libc)
    described = keep_freed_memory()
    assert libc.calls == [(-3, MMAP_THRESHOLD), (-1, TRIM_THRESHOLD)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert described == "glibc mallopt: mmap threshold 32 MiB, trim threshold 1024 MiB"
    keep_freed_memory()
    assert len(libc.calls) == 2


def test_nothing_is_set_outside_glibc_or_when_glibc_refuses(fresh, monkeypatch):
    other = _FakeLibc(glibc=False)
    _with_libc(monkeypatch, other)
    assert keep_freed_memory() is None and other.calls == []
    keep_freed_memory.cache_clear()
    _with_libc(monkeypatch, _FakeLibc(accepts=False))
    assert keep_freed_memory() is None

    def missing(name):
        raise OSError("no C library")

    keep_freed_memory.cache_clear()
    monkeypatch.setattr(allocator.ctypes, "CDLL", missing)
    assert keep_freed_memory() is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_this_machines_glibc_takes_the_settings(fresh):
    version = ctypes.CDLL(None).gnu_get_libc_version
    version.restype = ctypes.c_char_p
    assert version().startswith(b"2.")
    assert keep_freed_memory() == "glibc mallopt: mmap threshold 32 MiB, trim threshold 1024 MiB"


def test_a_run_records_the_allocator_settings(small_mlp_task):
    (cell,) = expand(parse_suite("").with_overrides({"tasks": [small_mlp_task], "steps": [3], "threads": 1}))
    result = run_cell(cell)
    assert result.status == "done", result.error
    assert result.env["malloc"] == (keep_freed_memory() or "default")
