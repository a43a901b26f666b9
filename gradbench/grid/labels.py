"""The one vocabulary of every output: a configuration's axes, and labels that name the axes
that vary and nothing else.

``config_axes`` flattens a configuration (``Cell.config()``, or a stored run's ``config``) into
axes: ``task`` (the name), each task knob, ``optimizer`` (its name with the hyper-parameters
that differ from its registered defaults), ``lr``, then every other field of the configuration,
``seed`` included, in the configuration's order. Fields are taken generically, so an axis added
to ``Cell`` later (a precision, say) is an axis here too; a field left out of an old
configuration takes ``Cell``'s default for it.

``varying_labels`` names each of a set of configurations by the axes whose values differ
among them: ``sgd, lr=0.1, batch_size=32``. ``run --dry-run``, ``diagnose``, the tables' row
labels and the figures' legends all use it, so one configuration reads the same everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gradbench.axes.optimizers import OPTIMIZERS
from gradbench.axes.specs import format_spec
from gradbench.grid.cell import Cell
from gradbench.tasks import TASKS
from gradbench.tasks.base import default_knobs

__all__ = ["config_axes", "varying_axes", "axis_text", "label_of", "varying_labels", "optimizer_label", "knobs_of", "task_label", "CORE_AXES"]

# Values of the fields a configuration leaves out at their default (so old keys stay).
_DEFAULTS = {"detail_every": 0, **{f.name: f.default for f in dataclasses.fields(Cell) if f.default is not dataclasses.MISSING}}
# Display order: Cell's fields, the schedule next to the learning rate it shapes.
_ORDER = ["schedule", *(f.name for f in dataclasses.fields(Cell) if f.name not in ("task", "task_knobs", "optimizer", "hyperparameters", "schedule"))]
# What names a configuration on its own, with nothing to compare it with (one run).
CORE_AXES = ("task", "optimizer", "lr", "activation", "init", "clip", "seed")
# Printed as the bare value: the name says which axis it is.
_BARE = ("task", "optimizer")


def knobs_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The task's knobs, defaults filled in (a cell's key leaves some out at their default)."""
    name = config["task"]
    defaults = default_knobs(name) if name in TASKS else {}
    return {**defaults, **config.get("task_knobs", {})}


def task_label(task: str, knobs: Mapping[str, Any]) -> str:
    """``task[knob=value]`` for the knobs that differ from the task's defaults."""
    defaults = default_knobs(task) if task in TASKS else {}
    return format_spec(task, {k: v for k, v in knobs.items() if defaults.get(k, object()) != v})


def optimizer_label(config: Mapping[str, Any]) -> str:
    """The optimizer with the hyper-parameters that differ from its registered defaults (the
    learning rate is an axis of its own)."""
    name, hyperparameters = config["optimizer"], dict(config["hyperparameters"])
    defaults = dict(OPTIMIZERS.get(name).defaults) if name in OPTIMIZERS else {}
    changed = {}
    for key, value in hyperparameters.items():
        value = tuple(value) if isinstance(value, list) else value
        if key != "lr" and value != defaults.get(key):
            changed[key] = value
    return format_spec(name, changed)


def config_axes(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every axis of ``config``, flat, in display order (see the module docstring)."""
    name = config["task"]
    knobs = knobs_of(config)
    axes: dict[str, Any] = {"task": name, **knobs, "optimizer": optimizer_label(config), "lr": float(config["hyperparameters"]["lr"])}
    fields = [*_ORDER, *(key for key in config if key not in ("task", "task_knobs", "optimizer", "hyperparameters"))]
    for key in fields:
        axes.setdefault(key, config.get(key, _DEFAULTS.get(key)))
    if axes.get("batch_size", 0) is None:
        axes["batch_size"] = "full"  # full-batch optimizers
    return axes


def axis_text(name: str, value: Any) -> str:
    """One axis as labels print it: ``lr=0.1``; the task and optimizer bare (``adam``)."""
    text = "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    return text if name in _BARE else f"{name}={text}"


def _same(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def varying_axes(axes: Sequence[Mapping[str, Any]], omit: Sequence[str] = ()) -> list[str]:
    """The axis names whose values differ among ``axes`` (``config_axes`` results), in display
    order, but those in ``omit``."""
    names = list(dict.fromkeys(n for one in axes for n in one))
    return [n for n in names if n not in omit and len({_same(one.get(n)) for one in axes}) > 1]


def label_of(axes: Mapping[str, Any], names: Sequence[str]) -> str:
    """``axes`` named by ``names``: ``sgd, lr=0.1, clip=none``."""
    return ", ".join(axis_text(n, axes.get(n)) for n in names)


def varying_labels(configs: Sequence[Mapping[str, Any]], omit: Sequence[str] = (), always: Sequence[str] = ()) -> list[str]:
    """A label for each configuration naming the axes that vary among them (those in ``omit``
    left out), after the ``always`` ones; ``all runs`` where nothing is left to name. A lone
    configuration, with nothing to differ from, is named by ``CORE_AXES``."""
    if len(configs) == 1 and not always:
        always = CORE_AXES
    axes = [config_axes(config) for config in configs]
    if len({config["task"] for config in configs}) > 1:
        # Across tasks, one task's knobs are not another's axes: each task is named as a spec
        # (``mnist1d_mlp[depth=4]``), its knobs that differ from its defaults inside it.
        knob_names = {knob for config in configs for knob in knobs_of(config)}
        for one, config in zip(axes, configs):
            one["task"] = task_label(config["task"], knobs_of(config))
            for knob in knob_names:
                one.pop(knob, None)
    names = [*always, *(n for n in varying_axes(axes, omit) if n not in always)]
    return [label_of(one, names) or "all runs" for one in axes]

