"""``Cell``: one training run, fully specified, and its stable key.

A ``Cell``'s ``key`` is a hash of its full configuration, so the same cell always has the same
key and a rerun can skip it. Cells are made by ``gradbench.grid.expansion``, run by
``gradbench.run.run_cell`` and stored under their key by ``gradbench.store``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradbench.axes.precision import DEFAULT_PRECISION
from gradbench.axes.schedules import CONSTANT
from gradbench.axes.specs import format_spec

__all__ = ["Cell"]


@dataclass(frozen=True)
class Cell:
    """One training run, fully specified. Frozen and hashable; ``key`` is stable across runs.

    Attributes:
        task, task_knobs: Task name and its knobs, defaults filled in, except ``batch_size``
            (the ``batch_size`` field below) and knobs added to a task after results could be
            stored, while at their default (``Task.unkeyed_defaults``): so a cell keeps its key.
        optimizer, hyperparameters: Optimizer name and all its hyper-parameters (``lr`` included).
        activation, init: Canonical specs (``leaky_relu[negative_slope=0.2]``), ``None`` where
            the task takes none.
        clip: ``none``, ``norm:C`` or ``value:C``.
        seed: Seeds the model's initialisation and the batch order.
        steps: Optimizer steps.
        batch_size: Mini-batch size; ``None`` for full-batch optimizers (every step sees the
            whole training set).
        device, threads: Where to run, and torch's CPU thread count.
        eval_every: Steps between evaluations of the test metric (steps-to-target resolution).
        record_every: Steps between records of per-layer gradient norms (0: none).
        detail_every: Steps between records of weight norms, update ratios and activation
            statistics (a multiple of ``record_every``; 0: none).
        validation: Fraction of the training set held out, never trained on, and evaluated with
            the test set (0: no validation split).
        schedule: The learning-rate schedule's canonical spec (``constant``: none).
        jacobian_every: Steps between the layer Jacobians' singular values on a probe batch
            (also at step 0 and the last step; 0: never).
        precision: ``fp32``, ``tf32``, ``bf16`` or ``fp16`` (``gradbench.axes.precision``).
        compile: Train with ``torch.compile``d steps (compiled before the first timed step).
    """

    task: str
    task_knobs: tuple[tuple[str, Any], ...]
    optimizer: str
    hyperparameters: tuple[tuple[str, Any], ...]
    activation: str | None
    init: str | None
    clip: str
    seed: int
    steps: int
    batch_size: int | None
    device: str
    threads: int
    eval_every: int
    record_every: int
    detail_every: int
    validation: float = 0.0
    schedule: str = CONSTANT
    jacobian_every: int = 0
    precision: str = DEFAULT_PRECISION
    compile: bool = False

    @property
    def lr(self) -> float:
        return float(dict(self.hyperparameters)["lr"])

    @property
    def task_label(self) -> str:
        from gradbench.tasks import TASKS  # here: a cell is held (stored, sent to a worker) without torch

        task = TASKS.get(self.task) if self.task in TASKS else None
        defaults = dict(task.knobs) if task else {}
        changed = {k: v for k, v in self.task_knobs if defaults.get(k) != v}
        return format_spec(self.task, changed)

    @property
    def optimizer_label(self) -> str:
        return format_spec(self.optimizer, dict(self.hyperparameters))

    def config(self) -> dict[str, Any]:
        """The full configuration as JSON-ready values."""
        return {
            "task": self.task,
            "task_knobs": dict(self.task_knobs),
            "optimizer": self.optimizer,
            "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in self.hyperparameters},
            "activation": self.activation,
            "init": self.init,
            "clip": self.clip,
            "seed": self.seed,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "device": self.device,
            "threads": self.threads,
            "eval_every": self.eval_every,
            "record_every": self.record_every,
            # Left out at 0 (no detailed records, as before they existed), so the cells stored
            # then keep their keys.
            **({"detail_every": self.detail_every} if self.detail_every else {}),
            # Left out at 0 (no validation split, as before it existed): stored keys stay.
            **({"validation": self.validation} if self.validation else {}),
            # Left out while constant (no schedule, as before schedules existed): keys stay.
            **({"schedule": self.schedule} if self.schedule != CONSTANT else {}),
            # Left out at 0 (none, as before they existed): keys stay.
            **({"jacobian_every": self.jacobian_every} if self.jacobian_every else {}),
            # Left out at fp32 and eager (how every run trained before they existed): keys stay.
            **({"precision": self.precision} if self.precision != DEFAULT_PRECISION else {}),
            **({"compile": True} if self.compile else {}),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Cell:
        def items(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
            return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()))

        fields = dict(config)
        fields.setdefault("detail_every", 0)  # stored before detail records existed
        fields.setdefault("validation", 0.0)  # stored before validation splits existed
        fields.setdefault("schedule", CONSTANT)  # stored before schedules existed
        fields.setdefault("jacobian_every", 0)  # stored before Jacobian statistics existed
        fields.setdefault("precision", DEFAULT_PRECISION)  # stored before precisions existed
        fields.setdefault("compile", False)  # stored before compiled runs existed
        fields["task_knobs"] = items(config["task_knobs"])
        fields["hyperparameters"] = items(config["hyperparameters"])
        return cls(**fields)

    @property
    def key(self) -> str:
        canonical = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = [self.task_label, self.optimizer_label]
        parts += [f"schedule={self.schedule}"] if self.schedule != CONSTANT else []
        parts += [p for p in (self.activation, self.init) if p]
        parts += [f"clip={self.clip}", f"seed={self.seed}"]
        parts += [f"precision={self.precision}"] if self.precision != DEFAULT_PRECISION else []
        parts += ["compiled"] if self.compile else []
        return " ".join(parts)
