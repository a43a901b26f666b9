"""The article this project grew from: vanishing gradients and training speed.

No text of it is published with the project: its claims are the ones the README's mission and
its default suite state ("What the default suite shows"), each put in words here and given a
number on our measure, with a band set from first principles (chance is 10% on ten classes,
an untrained classifier's loss is ln 10 = 2.303):

(a) sigmoid vs ReLU in a deep MLP: ReLU with He's init trains; sigmoid with the standard init
    does not learn in the same steps, its first layer receiving a vanishing share of the last
    layer's gradient;
(b) full-batch GD vs SGD at equal training time: SGD gets further;
(c) clipping against exploding gradients at a large learning rate: without it the run diverges
    or dies, with the global norm clipped it trains (and clipping cannot lift vanishing ones);
(d) Adam, RMSprop and Adagrad learn on the saturating sigmoid net where SGD does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gradbench.reproduce.claims import Band, Claim, Published, Reproduction
from gradbench.reproduce.evidence import Evidence, MissingRuns, Run, metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CHANCE", "LN10", "REPRODUCTION", "at_time", "clocked_evaluations", "equal_time", "failed_to_train", "log10_ratio"]

SOURCE = "the project's founding article (claims as stated in the README; no numbers published)"
CHANCE = 10.0  # % test accuracy of a guess among ten classes
LN10 = math.log(10)  # the cross-entropy of a uniform guess among ten classes
TARGET = 50.0  # % test accuracy: the mnist1d_mlp task's target, which the README's remedies reach

SIGMOID_SGD = {"optimizer": "sgd", "activation": "sigmoid", "init": "standard", "clip": "none"}
SIGMOID_SGD_CLIPPED = {**SIGMOID_SGD, "clip": "norm:1"}
RELU_HE = {"optimizer": "sgd", "activation": "relu", "init": "kaiming_normal", "clip": "none", "lr": 0.1}
RELU_STANDARD = {"optimizer": "sgd", "activation": "relu", "init": "standard"}
GD = {"optimizer": "gd"}
LARGE_LR = {"optimizer": "sgd", "activation": "relu", "init": "kaiming_normal", "lr": 1.0, "clip": "none"}
LARGE_LR_CLIPPED = {**LARGE_LR, "clip": "norm:1"}
ADAPTIVE = ("adam", "rmsprop", "adagrad")


def log10_ratio(run: Run) -> float:
    """log10 of the run's ``grad first/last``: the first layer's gradient norm over the last's,
    medians over the first tenth of the records (``nan`` when the run has none)."""
    ratio = run.get("grad_ratio_first_last")
    return math.log10(ratio) if ratio is not None and ratio > 0 else math.nan


def failed_to_train(run: Run) -> float:
    """1 when the run diverged or ended within 5 points of chance (dead: not learning), else 0."""
    accuracy = run.get("final_test_accuracy")
    return 1.0 if run["status"] == "diverged" or accuracy is None or 100 * accuracy <= CHANCE + 5 else 0.0


def clocked_evaluations(evidence: Evidence, run: Run) -> list[dict[str, Any]]:
    """The run's evaluations, each with ``clock``: the seconds its training steps took up to
    it, in CPU time where it is recorded (CPU runs: the neighbours' load on a shared machine
    does not inflate it), else the stored training time (wall, or CUDA events)."""
    cpu = [(row["step"], row["step_cpu_s"]) for row in evidence.steps(run)]
    evaluations = evidence.evaluations(run)
    if not cpu or any(seconds is None for _, seconds in cpu):
        return [{**row, "clock": row["train_time_s"]} for row in evaluations]
    totals, total = {0: 0.0}, 0.0
    for step, seconds in cpu:
        total += seconds
        totals[step] = total
    return [{**row, "clock": totals.get(row["step"], total)} for row in evaluations]


def at_time(evaluations: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The last evaluation made after at most ``seconds`` of training (its ``clock``)."""
    reached = [row for row in evaluations if row["clock"] <= seconds]
    if not reached:
        raise MissingRuns(f"no evaluation within {seconds:g} s of training")
    return max(reached, key=lambda row: row["clock"])


def equal_time(evidence: Evidence, first: Run, second: Run, column: str) -> float:
    """``column`` of ``first`` minus that of ``second``, each at the last evaluation within the
    training time both runs reached (the shorter run's total)."""
    one, two = clocked_evaluations(evidence, first), clocked_evaluations(evidence, second)
    if not one or not two:
        raise MissingRuns("a run of the equal-time comparison has no evaluations")
    seconds = min(max(row["clock"] for row in one), max(row["clock"] for row in two))
    a, b = at_time(one, seconds)[column], at_time(two, seconds)[column]
    return math.nan if a is None or b is None else float(a) - float(b)


def _per_seed(value: Callable[[Run], float], where: dict[str, Any], allow_diverged: bool = False) -> Callable[[Evidence], list[float]]:
    return lambda evidence: evidence.per_seed(value, allow_diverged=allow_diverged, **where)


def _sgd_minus_gd(column: str, scale: float) -> Callable[[Evidence], list[float]]:
    return lambda evidence: evidence.paired(lambda sgd, gd: scale * equal_time(evidence, sgd, gd, column), RELU_HE, GD)


ACCURACY = metric("final_test_accuracy", 100)
NEAR_CHANCE = Band(CHANCE - 5, CHANCE + 5, "within 5 points of chance (10% on ten classes; one seed's test set of 1000 digits is +-1 point)")
CLAIMS = (
    Claim(
        "sigmoid_sgd_accuracy",
        "(a) sigmoid, standard init, plain SGD: final test accuracy",
        Published("does not learn in 2000 steps", SOURCE),
        NEAR_CHANCE,
        _per_seed(ACCURACY, SIGMOID_SGD),
        "%",
    ),
    Claim(
        "sigmoid_sgd_loss",
        "(a) the same net's final training loss",
        Published("the loss never leaves ln 10", SOURCE),
        Band(round(LN10 - 0.05, 3), round(LN10 + 0.05, 3), "ln 10 = 2.303, a uniform guess, within 0.05 nats: not learning"),
        _per_seed(metric("final_train_loss"), SIGMOID_SGD),
    ),
    Claim(
        "sigmoid_vanishing",
        "(a) the same net's first-layer gradient over the last's, log10 (grad first/last)",
        Published("the gradient vanishes on its way down: the first layer receives a tiny share of the last's", SOURCE),
        Band(None, -3.0, "a thousandfold loss or more over 8 hidden layers: vanishing by any reading"),
        _per_seed(log10_ratio, SIGMOID_SGD),
        "decades",
    ),
    Claim(
        "relu_he_accuracy",
        "(a) ReLU, He (kaiming_normal) init, plain SGD: final test accuracy",
        Published("ReLU with He init trains, in the same steps", SOURCE),
        Band(TARGET, None, "the task's target, 50% on MNIST-1D (five times chance), reached"),
        _per_seed(ACCURACY, RELU_HE),
        "%",
    ),
    Claim(
        "relu_he_ratio",
        "(a) the ReLU/He net's first-layer gradient over the last's, log10",
        Published("ReLU with He init keeps the gradient's size through the layers", SOURCE),
        Band(-1.0, 1.0, "within a factor of 10 of 1 over 8 layers: neither vanishing nor exploding"),
        _per_seed(log10_ratio, RELU_HE),
        "decades",
    ),
    Claim(
        "relu_standard_ratio",
        "(a) ReLU with the standard init: first-layer gradient over the last's, log10",
        Published("the init matters too: ReLU with the standard init vanishes as well", SOURCE),
        Band(None, -1.0, "a tenfold loss or more over 8 layers"),
        _per_seed(log10_ratio, RELU_STANDARD),
        "decades",
    ),
    Claim(
        "sgd_vs_gd_loss",
        "(b) SGD's training loss minus full-batch GD's at equal training time (ReLU, He init, lr 0.1)",
        Published("at equal training time SGD reaches the lower loss", SOURCE),
        Band(None, 0.0, "the sign: SGD lower"),
        _sgd_minus_gd("train_loss", 1.0),
        "nats",
    ),
    Claim(
        "sgd_vs_gd_accuracy",
        "(b) SGD's test accuracy minus GD's at equal training time",
        Published("at equal training time SGD reaches the higher accuracy", SOURCE),
        Band(0.1, None, "the sign: SGD ahead by at least one of the 1000 test digits on average"),
        _sgd_minus_gd("test_accuracy", 100.0),
        "points",
    ),
    Claim(
        "large_lr_unclipped_fails",
        "(c) lr 1, no clipping: fraction of seeds that diverge or end within 5 points of chance",
        Published("without clipping the run diverges or its units die", SOURCE),
        Band(0.66, 1.0, "every seed, or all but one of three, fails"),
        _per_seed(failed_to_train, LARGE_LR, allow_diverged=True),
    ),
    Claim(
        "large_lr_clipped_accuracy",
        "(c) lr 1, global norm clipped at 1: final test accuracy",
        Published("with norm clipping it trains", SOURCE),
        Band(TARGET, None, "the task's target, 50%, reached"),
        _per_seed(ACCURACY, LARGE_LR_CLIPPED),
        "%",
    ),
    Claim(
        "clipping_cannot_lift_vanishing",
        "(c) the sigmoid net with the global norm clipped at 1: final test accuracy",
        Published("clipping bounds large gradients; it cannot lift vanishing ones", SOURCE),
        NEAR_CHANCE,
        _per_seed(ACCURACY, SIGMOID_SGD_CLIPPED),
        "%",
    ),
    *(
        Claim(
            f"{optimizer}_sigmoid_accuracy",
            f"(d) {optimizer} on the sigmoid net (standard init): final test accuracy",
            Published(f"{optimizer} learns on the saturating sigmoid net where SGD does not", SOURCE),
            Band(2 * CHANCE, None, "learning: at least twice chance (20%)"),
            _per_seed(ACCURACY, {"optimizer": optimizer, "activation": "sigmoid"}),
            "%",
        )
        for optimizer in ADAPTIVE
    ),
)


def _curve(evidence: Evidence, where: dict[str, Any], x: str, y: str, scale: float = 1.0) -> tuple[list[float], list[float], int]:
    """Means over seeds of ``x`` (step or clock) and ``y`` at each evaluation, over the
    seeds that reached it (a diverged run stops early), and how many runs diverged."""
    runs = [run for run in evidence.runs(**where) if run["status"] != "failed"]
    if not runs:
        raise MissingRuns(f"no stored run of {where}")
    tables = [clocked_evaluations(evidence, run) for run in runs]
    xs, ys = [], []
    for index in range(max(len(table) for table in tables)):
        rows = [table[index] for table in tables if index < len(table) and table[index][y] is not None and math.isfinite(table[index][y])]
        if rows:
            xs.append(sum(float(row[x]) for row in rows) / len(rows))
            ys.append(scale * sum(float(row[y]) for row in rows) / len(rows))
    return xs, ys, sum(run["status"] == "diverged" for run in runs)


def _plot(axes: Any, curve: tuple[list[float], list[float], int], label: str) -> None:
    xs, ys, diverged = curve
    axes.plot(xs, ys, marker="." if len(xs) < 3 else None, label=label + (f" ({diverged} diverged)" if diverged else ""))


def figure(evidence: Evidence) -> Figure:
    """(a) grad first/last per configuration; (b) training loss against training time, SGD
    and GD; (c) test accuracy at lr 1 with and without clipping; (d) test accuracy of the
    sigmoid net under SGD and the adaptive optimizers. Means over the seeds that reached each
    evaluation (a diverged run's curve stops where it diverged: the label counts them)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    (ratio_axes, time_axes), (clip_axes, adaptive_axes) = fig.subplots(2, 2)
    labels, values = [], []
    for label, where in (("sigmoid\nstandard", SIGMOID_SGD), ("relu\nstandard", RELU_STANDARD), ("relu\nhe", RELU_HE)):
        ratios = evidence.per_seed(log10_ratio, **where)
        labels.append(label)
        values.append(sum(ratios) / len(ratios))
    ratio_axes.bar(labels, values, color="grey")
    ratio_axes.axhline(0, color="black", linewidth=0.8)
    ratio_axes.set(ylabel="log10 grad first/last", title="(a) the gradient's way down (plain SGD)")
    for label, where in (("SGD (batch 64)", RELU_HE), ("GD (full batch)", GD)):
        _plot(time_axes, _curve(evidence, where, "clock", "train_loss"), label)
    time_axes.set(xlabel="training time (CPU seconds of the steps)", ylabel="training loss", title="(b) GD vs SGD at equal time (ReLU, He)")
    time_axes.legend()
    for label, where in (("lr 1, no clipping", LARGE_LR), ("lr 1, norm clipped at 1", LARGE_LR_CLIPPED)):
        _plot(clip_axes, _curve(evidence, where, "step", "test_accuracy", 100), label)
    clip_axes.set(xlabel="step", ylabel="test accuracy (%)", title="(c) exploding gradients and clipping (ReLU, He)")
    clip_axes.legend()
    for optimizer in ("sgd", *ADAPTIVE):
        where = SIGMOID_SGD if optimizer == "sgd" else {"optimizer": optimizer, "activation": "sigmoid"}
        _plot(adaptive_axes, _curve(evidence, where, "step", "test_accuracy", 100), optimizer)
    adaptive_axes.set(xlabel="step", ylabel="test accuracy (%)", title="(d) the sigmoid net (standard init)")
    adaptive_axes.legend()
    for axes in (clip_axes, adaptive_axes):
        axes.axhline(CHANCE, color="black", linestyle=":", linewidth=0.8)
    return fig


REPRODUCTION = Reproduction(
    name="article",
    title="The founding article: vanishing gradients and training speed",
    citation="gradbench's founding article (unpublished; its claims as the README states them)",
    protocol=(
        "The README's default suite with a third seed: mnist1d_mlp with 8 hidden layers of 64 units on MNIST-1D (4000 training, "
        "1000 test sequences), minibatches of 64, 2000 steps, seeds 0-2. (a) Plain SGD at lr 0.1 on sigmoid units with the "
        "standard init U[-1/sqrt(n), 1/sqrt(n)] against ReLU units with He's init (kaiming_normal) and with the standard init; "
        "'grad first/last' is the first layer's gradient norm over the last's (medians over the first tenth of training, "
        "recorded every 10 steps). (b) Full-batch gradient descent (lr 0.1, 300 steps) against SGD's ReLU/He run, compared at "
        "the last evaluation within the training time both reached (the CPU seconds their training steps took, on one torch "
        "thread: a shared machine's load does not move it, as it moves wall time). (c) SGD at lr 1 on the ReLU/He net without clipping and with the global "
        "gradient norm clipped at 1; and the sigmoid net clipped likewise. (d) Adam (lr 1e-3), RMSprop (1e-3) and Adagrad (1e-2), "
        "each at its default, on the sigmoid net. The article publishes no numbers: each claim is stated in words and given a "
        "band from first principles (chance 10%, ln 10 for the loss, the task's 50% target, factors of 10 for gradients). Measured "
        "at the default size (25 s wall with 2 workers): every claim within its band; at lr 1 without clipping two seeds of "
        "three diverge by step 5 and the third ends at chance."
    ),
    claims=CLAIMS,
    figure=figure,
    minutes=0.5,  # the sweep took 25 s with --executor process --workers 2 on a quiet 2-core machine (2026-11-30)
)
