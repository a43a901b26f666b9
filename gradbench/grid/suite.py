"""Suites: what a grid varies (``AXES``) and sets (``SETTINGS``), and suite files.

A suite is a list of grids; each grid is the product of its axes (tasks x optimizers x
activations x inits x clips x learning rates x schedules x seeds x steps x batch sizes). A suite file is
TOML: top-level keys are defaults for every ``[[grid]]`` table, and a file without ``[[grid]]``
tables is one grid::

    name = "relu-vs-sigmoid"
    tasks = ["mnist1d_mlp[depth=8]"]
    seeds = [0, 1, 2]
    steps = 1000

    [[grid]]
    activations = ["sigmoid"]
    inits = ["standard"]

    [[grid]]
    activations = ["relu"]
    inits = ["kaiming_normal"]

Parsing checks the file's shape (TOML, known keys); the values are checked when the suite is
expanded into cells (``gradbench.grid.expansion``), where errors name the file and line found here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from gradbench.monitor.gradient_monitor import DEFAULT_EVERY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Suite", "SuiteError", "AXES", "SETTINGS", "FLAGS", "load_suite", "default_suite", "parse_suite", "suite_error"]

# Axis name -> default values; every grid is the product of these.
AXES: dict[str, list[Any]] = {
    "tasks": ["mnist1d_mlp"],
    "optimizers": ["sgd"],
    "activations": ["relu"],
    "inits": ["default"],
    "clips": ["none"],
    "lrs": [None],  # None: the optimizer's own default learning rate
    "schedules": ["constant"],  # learning-rate schedules (gradbench.axes.schedules)
    "seeds": [0],
    "steps": [500],
    "batch_sizes": [None],  # None: the task's default batch size
}
# Single-valued settings shared by the whole grid.
# record_every: per-layer gradient norms every 10 steps cost about 0.5% of a small CPU step (every
# step, about 5%); detail_every: weight norms, update ratios and activation statistics (None:
# DETAIL_FACTOR x record_every). See gradbench.monitor.gradient_monitor.
# validation: the fraction of the training set held out as a validation split (0: none), which
# tuned tables (gradbench.report.tuning) choose learning rates on.
# jacobian_every: steps between the layer Jacobians' singular values (0: never), an opt-in
# analysis outside training (gradbench.monitor.jacobians).
# precision: fp32, tf32, bf16 (autocast) or fp16 (autocast and a loss scaler); compile: the
# model's forward and backward through torch.compile (gradbench.axes.precision, run.train).
SETTINGS: dict[str, Any] = {
    "device": "cpu", "threads": 1, "eval_every": None, "record_every": DEFAULT_EVERY, "detail_every": None, "validation": 0.0, "jacobian_every": 0,
    "precision": "fp32", "compile": False,
}
_META = ("name", "description")


class SuiteError(ValueError):
    """A suite that cannot be run; the message names the bad value (and the line in a file)."""


@dataclass(frozen=True)
class Suite:
    """A named list of grids, each a mapping of axis or setting -> values, plus where it came from."""

    name: str = "custom"
    description: str = ""
    grids: tuple[Mapping[str, Any], ...] = field(default_factory=lambda: ({},))
    source: str | None = None  # the file it was read from, for error messages
    text: str | None = None  # the file's text, to find the line of a bad value
    overridden: frozenset[str] = frozenset()  # keys set from the command line, not the file

    def with_overrides(self, overrides: Mapping[str, Any]) -> Suite:
        """The suite with each given axis or setting replaced in every grid (CLI flags)."""
        if not overrides:
            return self
        return replace(
            self,
            grids=tuple({**grid, **overrides} for grid in self.grids),
            overridden=self.overridden | frozenset(overrides),
        )


def _line_of(suite: Suite, grid_index: int, key: str) -> int | None:
    """Line number of ``key = ...`` in the suite file, in grid ``grid_index`` or the top level."""
    if suite.text is None:
        return None
    lines = suite.text.splitlines()
    section, found_top = -1, None
    # A key may be quoted ("steps" = 5); the 'grid' key may be a [grid] or [grid.x] table.
    pattern = re.compile(rf"""\s*(["']?){re.escape(key)}\1\s*=""" + (r"|\s*\[\s*grid\b" if key == "grid" else ""))
    for number, line in enumerate(lines, start=1):
        if re.match(r"\s*\[\[\s*grid\s*\]\]", line):
            section += 1
        elif pattern.match(line):
            if section == grid_index:
                return number
            if section == -1:
                found_top = number
    return found_top


# The command-line flag that sets each key, to name it in errors.
FLAGS = {
    "tasks": "--task", "optimizers": "--optimizer", "activations": "--activation", "inits": "--init",
    "clips": "--clip", "lrs": "--lr", "schedules": "--schedule", "seeds": "--seeds", "steps": "--steps", "batch_sizes": "--batch-size",
    "device": "--device", "threads": "--threads", "eval_every": "--eval-every", "record_every": "--record-every",
    "detail_every": "--detail-every", "validation": "--validation", "jacobian_every": "--jacobian-every",
    "precision": "--precision", "compile": "--compile",
}


def suite_error(suite: Suite, grid_index: int, key: str, message: str) -> SuiteError:
    if key in suite.overridden:
        return SuiteError(f"{FLAGS.get(key, key)}: {message}")
    if suite.source is None:
        return SuiteError(message)
    line = _line_of(suite, grid_index, key)
    where = f"{suite.source}, line {line}" if line else suite.source
    return SuiteError(f"{where}: {message}")


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Parse a TOML suite; errors name the file and line.

    Raises:
        SuiteError: for malformed TOML, unknown keys or values of the wrong shape.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{source}: malformed TOML: {error}") from None
    suite = Suite(source=source, text=text)
    known = set(AXES) | set(SETTINGS)
    top = {k: v for k, v in document.items() if k != "grid"}
    for key in top:
        if key not in known and key not in _META:
            raise suite_error(suite, -1, key, f"unknown key {key!r}; valid keys: {', '.join([*_META, *AXES, *SETTINGS, 'grid'])}")
    grids = document.get("grid", [{}])
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise suite_error(suite, -1, "grid", "'grid' must be a list of tables: write [[grid]]")
    for index, grid in enumerate(grids):
        for key in grid:
            if key not in known:
                raise suite_error(suite, index, key, f"unknown key {key!r} in [[grid]] {index + 1}; valid keys: {', '.join([*AXES, *SETTINGS])}")
    defaults = {k: v for k, v in top.items() if k in known}
    for key in _META:
        if key in top and not isinstance(top[key], str):
            raise suite_error(suite, -1, key, f"{key!r} must be a string")
    return replace(
        suite,
        name=top.get("name", Path(source).stem),
        description=top.get("description", ""),
        grids=tuple({**defaults, **grid} for grid in grids),
    )


def load_suite(path: str | Path) -> Suite:
    """Read a suite file.

    Raises:
        SuiteError: if it cannot be read or parsed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SuiteError(f"cannot read suite file {str(path)!r}: {getattr(error, 'strerror', None) or error}") from None
    return parse_suite(text, str(path))


def default_suite() -> Suite:
    """The built-in default suite (``gradbench/suites/default.toml``)."""
    text = resources.files("gradbench").joinpath("suites/default.toml").read_text(encoding="utf-8")
    return parse_suite(text, "default suite")


