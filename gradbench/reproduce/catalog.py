"""The reproductions by name: one module per paper in ``gradbench/reproduce/papers/``, each
defining ``REPRODUCTION``, and its suite files in ``gradbench/suites/reproduce/``.

Sizes: ``smoke`` (the default suite with a few steps and one seed: the plumbing, in CI; its
verdicts mean nothing), ``default`` (minutes on two CPU cores, smaller than the paper where
needed, and said so) and ``full`` (the paper's own size, where one GPU can run it).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib import resources
from typing import TYPE_CHECKING

from gradbench.reproduce.claims import Reproduction

if TYPE_CHECKING:
    from gradbench.grid.cell import Cell
    from gradbench.grid.suite import Suite

__all__ = ["ORDER", "SIZES", "names", "get", "suite_of", "cells_of"]

# The order of `reproduce --list` and docs/reproductions.md (the order: the papers by
# what they show, the project's own article last); modules not listed follow by name.
ORDER = ("mnist1d", "glorot_bengio", "he_init", "selu", "batch_norm", "adam", "quadratic_deep", "article")
SIZES = ("smoke", "default", "full")
_PAPERS = "gradbench.reproduce.papers"


def names() -> list[str]:
    """Every reproduction's name, in ``ORDER``."""
    found = {info.name for info in pkgutil.iter_modules(importlib.import_module(_PAPERS).__path__) if not info.name.startswith("_")}
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def get(name: str) -> Reproduction:
    """The reproduction called ``name``.

    Raises:
        ValueError: for an unknown name, with the choices and the closest one.
    """
    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown reproduction {name!r}{hint}; choose from: {', '.join(known)}")
    reproduction: Reproduction = importlib.import_module(f"{_PAPERS}.{name}").REPRODUCTION
    return reproduction


def suite_text(name: str, size: str = "default") -> str:
    """The text of a reproduction's suite file at ``size`` (smoke reads the default file)."""
    file = f"{name}.full.toml" if size == "full" else f"{name}.toml"
    return resources.files("gradbench").joinpath(f"suites/reproduce/{file}").read_text(encoding="utf-8")


def suite_of(reproduction: Reproduction, size: str = "default") -> Suite:
    """The suite a reproduction runs at ``size``.

    Raises:
        ValueError: for an unknown size, or ``full`` where the reproduction has none.
    """
    from gradbench.grid.suite import parse_suite  # imports torch (the monitor's defaults): not for --list

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from: {', '.join(SIZES)}")
    if size == "full" and not reproduction.full:
        why = reproduction.full_note or "its default size is the paper's own"
        raise ValueError(f"reproduction {reproduction.name!r} has no --full size: {why}")
    suite = parse_suite(suite_text(reproduction.name, size), f"reproduction {reproduction.name}" + (" (full)" if size == "full" else ""))
    return suite.with_overrides(reproduction.smoke) if size == "smoke" else suite


def cells_of(reproduction: Reproduction, size: str = "default", *, device: str | None = None, threads: int | None = None, local_devices: bool = True) -> list[Cell]:
    """The cells a reproduction runs at ``size`` on ``device`` with ``threads`` (``None``: the
    suite's). They are part of each cell's key, so the command that runs a reproduction and
    whatever reads it back (``--no-run``, ``scripts/reproductions.py``) build them here alike.

    Raises:
        ValueError: for a bad size, device or thread count.
    """
    from gradbench.grid.expansion import expand

    overrides = {name: value for name, value in (("device", device), ("threads", threads)) if value is not None}
    return expand(suite_of(reproduction, size).with_overrides(overrides), local_devices=local_devices)
