"""Tuned mode: each optimizer's best learning rate, chosen on a validation metric.

A fair comparison of optimizers gives each its best learning rate, chosen on held-out data and
never on the test metric that the table then reports (Schneider et al. 2019, "DeepOBS: A Deep
Learning Optimizer Benchmark Suite", arXiv:1903.05499; Schmidt et al. 2021, "Descending through a
Crowded Valley", arXiv:2007.01547). Runs that differ only in their learning rate and seed are one
*configuration*; for each, the learning rate with the best mean over seeds of the tuning metric
wins, and only its runs go on to the table.

The tuning metric is the final validation loss by default (``validation_loss``; or
``validation_accuracy``), which needs runs made with a validation split (``--validation``).
``train_loss`` may be chosen explicitly for runs without one; the table then says so.

Diverged and failed runs never win: a learning rate is a candidate only if every one of its runs
finished with a finite tuning metric. If no learning rate is because runs diverged or failed, the
one whose runs lasted longest (mean steps run) is kept, and its cells show how its runs ended.
Ties go to the smaller learning rate (the safer one). A task that never has the tuning metric
(``validation_accuracy`` on a regression task) is an error, not a fallback.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradbench.report.pivot import METRICS, run_axes

__all__ = ["TUNE_ON", "Tuned", "tune"]

TUNE_ON = ("validation_loss", "validation_accuracy", "train_loss")
_NOTE = {
    "validation_loss": "learning rate tuned per configuration on the final validation loss",
    "validation_accuracy": "learning rate tuned per configuration on the final validation accuracy",
    "train_loss": "learning rate tuned per configuration on the final TRAIN loss (no validation split)",
}


@dataclass
class Tuned:
    """What tuning kept.

    Attributes:
        runs: The runs of each configuration's chosen learning rate.
        lrs: The chosen learning rate, by run key.
        note: How learning rates were chosen, for the table's caption.
        candidates: Per configuration (its axes but ``lr``, as JSON), each learning rate's mean
            tuning metric over seeds (``None``: not a candidate), for inspection and tests.
    """

    runs: list[Mapping[str, Any]]
    lrs: dict[str, float]
    note: str
    candidates: dict[str, dict[float, float | None]]


def tune(runs: Sequence[Mapping[str, Any]], tune_on: str = "validation_loss") -> Tuned:
    """Keep, for every configuration, the runs of its best learning rate on ``tune_on``.

    Raises:
        ValueError: for an unknown ``tune_on``, a validation metric asked of runs made without
            a validation split, or a metric that no finished run of a configuration has.
    """
    if tune_on not in TUNE_ON:
        raise ValueError(f"unknown --tune-on {tune_on!r}; choose from: {', '.join(TUNE_ON)}")
    metric = METRICS[tune_on]
    if tune_on.startswith("validation"):
        without = [run for run in runs if not json.loads(run["config"]).get("validation")]
        fractions = sorted({json.loads(run["config"]).get("validation") for run in runs} - {None, 0, 0.0})
        if without and fractions:  # a mixed store: keeping the runs with a split is one flag away
            raise ValueError(
                f"--tuned chooses learning rates on a validation split, and {len(without)} of {len(runs)} runs have none "
                f"(e.g. {without[0]['label']!r}): keep those with one, --where validation={fractions[0]:g}, "
                "rerun the others with --validation, or choose --tune-on train_loss"
            )
        if without:
            raise ValueError(
                f"--tuned chooses learning rates on a validation split, and {len(without)} of {len(runs)} runs have none "
                f"(e.g. {without[0]['label']!r}): rerun them with --validation 0.1 (suite key 'validation'), "
                "or choose --tune-on train_loss"
            )
    configurations: dict[str, dict[float, list[Mapping[str, Any]]]] = {}
    for run in runs:
        axes = run_axes(run)
        lr = axes.pop("lr")
        identity = json.dumps([json.loads(run["config"])["task"], axes], sort_keys=True, default=str)
        configurations.setdefault(identity, {}).setdefault(lr, []).append(run)
    kept: list[Mapping[str, Any]] = []
    lrs: dict[str, float] = {}
    candidates: dict[str, dict[float, float | None]] = {}
    sign = -1.0 if metric.better == "higher" else 1.0
    for identity, by_lr in configurations.items():
        done = [run for lr_runs in by_lr.values() for run in lr_runs if run["status"] == "done"]
        if done and all(run.get(metric.field) is None for run in done):  # type: ignore[arg-type]
            # The task never has this metric (no accuracy on a regression task): the fallback
            # below is for runs lost to divergence, and would pick the smallest lr silently.
            has = [name for name in TUNE_ON if any(run.get(METRICS[name].field) is not None for run in done)]  # type: ignore[arg-type]
            raise ValueError(
                f"--tune-on {tune_on}: task {done[0]['task']!r} has no {tune_on.replace('_', ' ')} "
                f"(it has: {', '.join(has) or 'none of them'}); choose --tune-on from those, or leave the task out with --where"
            )
        scores: dict[float, float | None] = {}
        for lr, lr_runs in by_lr.items():
            values = [run.get(metric.field) for run in lr_runs if run["status"] == "done"]  # type: ignore[arg-type]
            clean = len(values) == len(lr_runs) and all(v is not None and math.isfinite(v) for v in values)
            scores[lr] = statistics.fmean(values) if clean else None  # type: ignore[arg-type]
        candidates[identity] = scores
        ranked = sorted((sign * score, lr) for lr, score in scores.items() if score is not None)
        if ranked:
            chosen = ranked[0][1]
        else:  # every learning rate lost a run: keep the one that lasted longest
            chosen = max(by_lr, key=lambda lr: (statistics.fmean(r["steps_run"] or 0 for r in by_lr[lr]), -lr))
        for run in by_lr[chosen]:
            kept.append(dict(run))
            lrs[run["key"]] = chosen
    order = {run["key"]: index for index, run in enumerate(runs)}
    kept.sort(key=lambda run: order[run["key"]])
    return Tuned(kept, lrs, _NOTE[tune_on], candidates)
