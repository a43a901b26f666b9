"""TensorBoard event files of each run, written by the sweep's driver as results arrive.

For watching a long sweep: ``gradbench run --tensorboard DIR`` and ``tensorboard --logdir DIR``.
Each run the sweep finishes gets a folder of its own (its label and key), written whole from
the ``RunResult`` the executor returned, after the store has it: the runs themselves, and their
timed steps, never touch an event file. What a run's folder holds, by tag:

- ``loss/train_step``: the training loss of every step (the monitor's record);
- ``eval/train_loss``, ``eval/test_loss``, ``eval/test_accuracy``, ``eval/validation_loss``,
  ``eval/validation_accuracy``, ``eval/lr``: at every evaluation, where the run has them;
- ``grad_norm/<layer>`` and ``grad_norm/global``: the gradient's L2 norm per layer and over all
  layers (before clipping) at every recorded step (``record_every``).

Wall times are the run's own: its start plus the training time up to the step, so TensorBoard's
relative axis shows training time. Values are TensorBoard's float32 scalars.

The writer is ``torch.utils.tensorboard``, which needs the ``tensorboard`` package (the
``gradbench[tensorboard]`` extra, which also brings ``tensorboard --logdir`` to view them).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from gradbench.run.result import RunResult

__all__ = ["EXTRA", "TensorBoardUnavailable", "TensorBoardWriter", "check_tensorboard", "run_folder"]

EXTRA = "gradbench[tensorboard]"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,\[\]+:-]+")


class TensorBoardUnavailable(ImportError):
    """The ``tensorboard`` package is not installed."""


def check_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        TensorBoardUnavailable: naming the extra to install.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch's module imports tensorboard's writer at once
        raise TensorBoardUnavailable(f"--tensorboard needs the tensorboard package ({error}): pip install '{EXTRA}'") from None
    return SummaryWriter


def run_folder(result: RunResult) -> str:
    """The run's folder name: its label made path-safe (TensorBoard lists runs by folder), then
    its key, which keeps two runs with one label apart."""
    label = _UNSAFE.sub("_", result.cell.label).strip("_.")[:150]
    return f"{label}__{result.cell.key[:12]}"


def _scalars(result: RunResult) -> list[tuple[str, float, int, float]]:
    """(tag, value, step, seconds of training up to the step) of every scalar the run has."""
    elapsed = [0.0, *itertools.accumulate(result.step_times)]  # elapsed[k]: after step k

    def at(step: int) -> float:
        return elapsed[min(step, len(elapsed) - 1)]

    scalars: list[tuple[str, float, int, float]] = []
    history = result.history
    if history is not None:
        scalars += [("loss/train_step", loss, step, at(step)) for step, loss in zip(history.loss_steps, history.losses)]
        for step, norms, total in zip(history.grad_steps, history.layer_grad_norms, history.total_norm_before):
            scalars += [(f"grad_norm/{name}", norm, step, at(step)) for name, norm in zip(history.layer_names, norms) if norm is not None]
            if total is not None:
                scalars.append(("grad_norm/global", total, step, at(step)))
    for evaluation in result.evaluations:
        for name in ("train_loss", "test_loss", "test_accuracy", "validation_loss", "validation_accuracy", "lr"):
            value = getattr(evaluation, name)
            if value is not None:
                scalars.append((f"eval/{name}", value, evaluation.step, evaluation.train_time_s))
    return scalars


class TensorBoardWriter:
    """Writes each run's event files under ``directory`` (created at the first run).

    Args:
        directory: The ``--logdir`` to give TensorBoard.

    Raises:
        TensorBoardUnavailable: without the ``tensorboard`` package (checked here, before any
            run, so that a sweep that asks for event files never runs without them).
        ValueError: if ``directory`` is not a folder or cannot be made or written (its nearest
            existing ancestor is a file or is not writable).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        # The folder is made at the first run; whether it can be is checked now, before any run.
        existing = next(path for path in (self.directory, *self.directory.absolute().parents) if path.exists())
        if not existing.is_dir():
            what = "is not a directory" if existing == self.directory else f"cannot be made: {str(existing)!r} is not a directory"
            raise ValueError(f"--tensorboard {str(self.directory)!r} {what}")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--tensorboard {str(self.directory)!r} cannot be written: {str(existing)!r} is not writable")
        self._summary_writer = check_tensorboard()

    def __call__(self, result: RunResult) -> Path | None:
        """Write ``result``'s events, whole: into a hidden folder, renamed into place (a rerun
        of the same cell replaces the old folder). Returns the folder, ``None`` for a run with
        nothing to show (failed before its first evaluation)."""
        scalars = _scalars(result)
        if not scalars:
            return None
        folder = self.directory / run_folder(result)
        partial = self.directory / f".{folder.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        start = _timestamp(result.started_at)
        writer = self._summary_writer(log_dir=str(partial))
        try:
            for tag, value, step, seconds in scalars:
                writer.add_scalar(tag, float(value), global_step=step, walltime=start + seconds)
        finally:
            writer.close()
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        return folder


def _timestamp(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:  # a result made by hand, without a start time
        return 0.0
