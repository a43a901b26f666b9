"""He, Zhang, Ren & Sun 2015, "Delving Deep into Rectifiers": their initialisation against
Xavier's in deep ReLU nets (Figures 2 and 3).

The paper's words become numbers on the training loss, as a fraction of the chance loss (the
entropy of the training labels, ln 10 for MNIST-1D's balanced classes): "stalls" is a final
training loss within 2% of chance, "converges" one below half of chance, and "starts reducing
error earlier" the number of steps until the training loss first falls below 90% of chance.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

from gradbench.reproduce.claims import Band, Claim, Published, Reproduction
from gradbench.reproduce.evidence import Evidence, Run

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: --list stays light
    from matplotlib.figure import Figure

__all__ = ["REPRODUCTION", "loss_fraction", "steps_below"]

TASKS = {22: "mnist1d_mlp[depth=22,width=128]", 30: "mnist1d_mlp[depth=30,width=128]"}
INITS = {"kaiming_normal": "He et al. (kaiming_normal)", "xavier_normal": "Xavier (xavier_normal, gain 1)"}
STALL = (98.0, 102.0)  # a final training loss within 2% of chance: the net learnt nothing
CONVERGED = 50.0  # a final training loss below half of chance: the net learnt
START = 0.9  # "starts reducing error": the training loss first below 90% of chance


def loss_fraction(run: Run) -> float:
    """The run's final training loss as a percentage of its chance loss (nan without one)."""
    final, chance = run.get("final_train_loss"), run.get("chance_loss")
    if final is None or chance is None or not math.isfinite(final):
        return math.nan
    return 100.0 * float(final) / float(chance)


def steps_below(evidence: Evidence, run: Run, fraction: float = START) -> float:
    """The first evaluated step whose training loss is below ``fraction`` of the chance loss; a
    run that never gets there counts as its whole length (a lower bound, so a ratio stays
    finite and errs towards 'no difference')."""
    chance = float(run["chance_loss"])
    for row in evidence.evaluations(run):
        if row["train_loss"] is not None and row["train_loss"] < fraction * chance:
            return float(row["step"])
    return float(run["steps"])


def _final(depth: int, init: str) -> Any:
    return lambda evidence: evidence.per_seed(loss_fraction, task=TASKS[depth], init=init)


def _start_ratio(evidence: Evidence) -> list[float]:
    task = TASKS[22]
    return evidence.paired(
        lambda xavier, kaiming: steps_below(evidence, xavier) / max(steps_below(evidence, kaiming), 1.0),
        {"task": task, "init": "xavier_normal"}, {"task": task, "init": "kaiming_normal"},
    )


_CONVERGED_WHY = (
    "a net that learns at all brings an MLP's MNIST-1D training loss well below half of chance in "
    "96 epochs, while a stalled one stays at chance: the threshold separates the two outcomes the "
    "paper contrasts, not a precision of its curves"
)

CLAIMS = (
    Claim(
        "30_xavier_stalls", "30 layers, Xavier's initialisation: training stalls (final training loss, % of the chance loss)",
        Published("\"completely stalls\" (the error stays at its initial value)", "Figure 3 and its caption (as recalled: the stored pages have only the abstract)"),
        Band(*STALL, "a net that learns nothing keeps the chance loss; 2% allows for the output bias and the evaluation's noise"),
        _final(30, "xavier_normal"), "%",
    ),
    Claim(
        "30_he_converges", "30 layers, He et al.'s initialisation: training converges (final training loss, % of the chance loss)",
        Published("converges", "Figure 3 and its caption (as recalled: the stored pages have only the abstract)"),
        Band(None, CONVERGED, _CONVERGED_WHY),
        _final(30, "kaiming_normal"), "%",
    ),
    Claim(
        "22_he_converges", "22 layers, He et al.'s initialisation: training converges (final training loss, % of the chance loss)",
        Published("converges", "Figure 2 and its caption (as recalled: the stored pages have only the abstract)"),
        Band(None, CONVERGED, _CONVERGED_WHY),
        _final(22, "kaiming_normal"), "%",
    ),
    Claim(
        "22_xavier_converges", "22 layers, Xavier's initialisation: training converges too (final training loss, % of the chance loss)",
        Published("converges (\"both converge\")", "Figure 2 and its caption (as recalled: the stored pages have only the abstract)"),
        Band(None, CONVERGED, _CONVERGED_WHY),
        _final(22, "xavier_normal"), "%",
    ),
    Claim(
        "22_he_earlier", "22 layers: He et al.'s initialisation starts reducing the error earlier (steps until the training loss is below 90% of chance, Xavier's / He's)",
        Published("\"ours starts reducing error earlier\"", "Figure 2 and its caption (as recalled: the stored pages have only the abstract)"),
        Band(1.05, None, "the paper says only 'earlier': any ratio above 1 agrees with it, and 1.05 keeps a tie on the 50-step evaluation grid from counting"),
        _start_ratio, "x",
    ),
)


def figure(evidence: Evidence) -> Figure:
    """Figures 2 and 3 side by side: the training loss (fraction of chance) against steps, the
    mean over seeds and each seed, for each initialisation."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (depth, figure_name) in zip(axes, ((22, "Figure 2"), (30, "Figure 3"))):
        for (init, label), color in zip(INITS.items(), ("tab:red", "tab:blue")):
            curves = [_loss_curve(evidence, run) for run in evidence.runs(task=TASKS[depth], init=init)]
            curves = [curve for curve in curves if curve]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(curve) for curve in curves)))
            for curve in curves:  # each seed, thin: a mean can hide a seed that stays at chance
                ax.plot(steps, [curve[step] for step in steps], color=color, linewidth=0.6, alpha=0.4)
            ax.plot(steps, [statistics.fmean(curve[step] for curve in curves) for step in steps], color=color, label=f"{label}: mean of n={len(curves)} (thin: each seed)")
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="chance loss")
        ax.axhline(CONVERGED / 100, color="grey", linestyle="--", linewidth=0.8, label="'converged' threshold")
        ax.set_title(f"{depth} ReLU layers ({figure_name}'s comparison)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss / chance loss")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("He et al. 2015 on MNIST-1D MLPs (width 128, momentum SGD, lr 0.01)", fontsize=10)
    return fig


def _loss_curve(evidence: Evidence, run: Run) -> dict[int, float]:
    chance = float(run["chance_loss"])
    return {int(row["step"]): float(row["train_loss"]) / chance for row in evidence.evaluations(run) if row["train_loss"] is not None}


PROTOCOL = (
    "He et al. trained 22- and 30-layer ReLU conv nets (19 or 27 conv layers and 3 fully connected) on "
    "ImageNet with SGD, momentum 0.9, learning rate 0.01 and mini-batches of 128, comparing their "
    "initialisation N(0, 2/fan_in) with Xavier's (variance 1/fan_in, gain 1). Real ImageNet is not on this "
    "machine, so plain ReLU MLPs of 22 and 30 hidden layers, 128 units wide, on MNIST-1D (4000 training "
    "examples generated offline) stand in: kaiming_normal against xavier_normal, SGD with momentum 0.9, "
    "lr 0.01, batches of 128 as in the paper, 3000 steps (96 epochs; the paper ran its nets for far more "
    "iterations), no weight decay, 3 seeds, the training loss on the training set every 50 steps. The paper's "
    "words become numbers on the training loss as a percentage of the chance loss (the label entropy, ln 10): "
    "'stalls' is a final loss within 2% of chance, 'converges' one below 50%, and 'starts reducing error "
    "earlier' the steps until the loss first falls below 90% of chance, Xavier's divided by He et al.'s "
    "(a run that never gets there counts as its 3000 steps)."
)

REPRODUCTION = Reproduction(
    name="he_init",
    title="He et al. 2015: a 30-layer ReLU net trains with their initialisation, stalls with Xavier's",
    citation="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun (2015), \"Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet Classification\", ICCV 2015, arXiv:1502.01852",
    protocol=PROTOCOL,
    claims=CLAIMS,
    figure=figure,
    minutes=1.9,  # the sweep took 113 s with --executor process --workers 2 on a quiet 2-core machine (2026-11-30)
    full=False,
    full_note="the paper's ImageNet conv nets need ImageNet, which gradbench does not load; the default MLP stand-in is the whole reproduction",
    smoke={"steps": [20], "seeds": [0], "eval_every": 10},
)
