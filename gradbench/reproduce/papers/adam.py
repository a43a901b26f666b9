"""Kingma & Ba's logistic-regression experiment (Adam, Sec. 6.1, Figure 1 left): Adam converges
like SGD with Nesterov momentum, and both faster than Adagrad; RMSprop beside them.

Each optimizer gets its best learning rate on the grid, chosen (``gradbench.report.tuning``) by
the mean over seeds of the final training NLL, the quantity Figure 1 plots; every claim compares
the tuned optimizers' training NLL (on the whole training set, the L2 term left out) seed by
seed, at the end of training or after a few epochs.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from gradbench.report.tuning import tune
from gradbench.reproduce.claims import Band, Claim, Published, Reproduction
from gradbench.reproduce.evidence import Evidence, Run

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: --list stays light
    from matplotlib.figure import Figure

__all__ = ["REPRODUCTION", "OPTIMIZERS", "STEPS_PER_EPOCH", "tuned_runs", "nll_at_epoch"]

OPTIMIZERS = ("adam", "nesterov", "adagrad", "rmsprop")  # the runs' optimizer names
STEPS_PER_EPOCH = 11  # the default size's epoch: 1437 digits training images // 128 (--full: 60000 // 128 = 468)
EPOCHS = 45  # Figure 1's x axis: 45 passes over the training set
L2 = 1e-4  # the suite's weight_decay: the L2 term (the paper gives no lambda)
SELECTED = {name: f"{name}[weight_decay={L2:g}]" for name in OPTIMIZERS}  # the runs' optimizer axis, as labels name it


def tuned_runs(evidence: Evidence, optimizer: str) -> dict[int, Run]:
    """The runs (one per seed) of ``optimizer`` at its tuned learning rate: the lowest mean over
    seeds of the final training NLL among the rates whose every run finished."""
    runs = evidence.require(optimizer=SELECTED[optimizer])  # the whole grid: a rate missing would tune on fewer
    return {int(run["seed"]): run for run in tune(runs, "train_loss").runs}


def nll_at_epoch(evidence: Evidence, run: Run, epoch: int) -> float:
    """The training NLL (whole training set) at the end of ``epoch``; ``nan`` if not evaluated
    (a run that diverged before it). Both sizes evaluate once an epoch: an epoch is the run's
    ``eval_every`` steps (11 on digits, 468 on MNIST)."""
    step = epoch * int(json.loads(run["config"])["eval_every"])
    for row in evidence.evaluations(run):
        if row["step"] == step and row["train_loss"] is not None:
            return float(row["train_loss"])
    return math.nan


def _ratio(numerator: str, denominator: str, epoch: int) -> Callable[[Evidence], Sequence[float]]:
    """NLL of ``numerator`` / NLL of ``denominator`` at ``epoch``, both tuned, seed by seed."""

    def measure(evidence: Evidence) -> Sequence[float]:
        top, bottom = tuned_runs(evidence, numerator), tuned_runs(evidence, denominator)
        return [nll_at_epoch(evidence, top[seed], epoch) / nll_at_epoch(evidence, bottom[seed], epoch) for seed in sorted(set(top) & set(bottom))]

    return measure


_TEXT = "Sec. 6.1 on Figure 1 (MNIST): 'Adam yields similar convergence as SGD with momentum and both converge faster than Adagrad'"


def _claims() -> tuple[Claim, ...]:
    similar = "'similar' read as within 10% of each other"
    return (
        Claim("adam_vs_nesterov_final", "Adam's training NLL after 45 epochs / SGD-Nesterov's (tuned both)",
              Published("similar convergence", _TEXT, 1.0), Band(0.9, 1.1, similar), _ratio("adam", "nesterov", EPOCHS), "x"),
        Claim("adam_vs_nesterov_epoch5", "Adam's training NLL after 5 epochs / SGD-Nesterov's",
              Published("similar convergence", _TEXT, 1.0), Band(0.9, 1.1, similar + ", early in training too"), _ratio("adam", "nesterov", 5), "x"),
        Claim("adagrad_vs_adam_final", "Adagrad's training NLL after 45 epochs / Adam's",
              Published("Adam converges faster than Adagrad", _TEXT), Band(1.0, None, "'faster' read as: Adagrad's NLL is higher at the same epoch"),
              _ratio("adagrad", "adam", EPOCHS), "x"),
        Claim("adagrad_vs_nesterov_final", "Adagrad's training NLL after 45 epochs / SGD-Nesterov's",
              Published("SGD with momentum converges faster than Adagrad", _TEXT), Band(1.0, None, "'faster' read as: Adagrad's NLL is higher at the same epoch"),
              _ratio("adagrad", "nesterov", EPOCHS), "x"),
        Claim("rmsprop_vs_adam_final", "RMSprop's training NLL after 45 epochs / Adam's",
              Published("Adam performed equal or better than RMSProp", "Sec. 6.4 (said of a VAE; Figure 1 right shows RMSprop only on IMDB)"),
              Band(0.98, None, "'equal or better' read as: RMSprop's NLL at most 2% below Adam's"), _ratio("rmsprop", "adam", EPOCHS), "x"),
    )


def figure(evidence: Evidence) -> Figure:
    """Figure 1 (left) on digits (on MNIST with --full): the training NLL per epoch of each
    tuned optimizer, the mean over seeds and the seeds' range."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    axes = fig.subplots()
    dataset = "MNIST" if any(str(cell.task).startswith("mnist") for cell in evidence.cells) else "digits"
    colours: Mapping[str, str] = {"adam": "tab:red", "nesterov": "tab:blue", "adagrad": "tab:green", "rmsprop": "tab:purple"}
    for optimizer in OPTIMIZERS:
        runs = tuned_runs(evidence, optimizer)
        epochs = list(range(1, EPOCHS + 1))
        curves = [[nll_at_epoch(evidence, run, epoch) for epoch in epochs] for run in runs.values()]
        mean = [statistics.fmean(values) for values in zip(*curves)]
        low = [min(values) for values in zip(*curves)]
        high = [max(values) for values in zip(*curves)]
        lr = float(next(iter(runs.values()))["lr"])
        axes.plot(epochs, mean, color=colours[optimizer], label=f"{optimizer} (lr {lr:g})")
        axes.fill_between(epochs, low, high, color=colours[optimizer], alpha=0.2)
    axes.set_yscale("log")
    axes.set_xlabel(f"epochs (passes over the {'60000' if dataset == 'MNIST' else '1437'} training images)")
    axes.set_ylabel("training NLL")
    axes.set_title(f"logistic regression on {dataset}, alpha/sqrt(t), tuned learning rates")
    axes.legend(fontsize=8)
    return fig


REPRODUCTION = Reproduction(
    name="adam",
    title="Kingma & Ba 2015: Adam on logistic regression against SGD-Nesterov, Adagrad and RMSprop (Sec. 6.1)",
    citation="D. P. Kingma and J. Ba, 2015, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv:1412.6980)",
    protocol=(
        "L2-regularised multinomial logistic regression (digits_mlp[depth=0]: one Linear(64, 10), torch's default "
        "initialisation, the same one for every optimizer at a given seed) on scikit-learn's 8x8 digits, standing in for "
        "MNIST: it is the offline dataset closest to it (handwritten digits as raw pixels scaled to [0, 1], mostly zero at "
        "the borders, on which logistic regression works well, as on MNIST; MNIST-1D is not linearly separable and would "
        "test something else), but 64 features and 1437 training images instead of 784 and 60000. As in the paper: "
        "batches of 128 (11 steps an epoch), 45 epochs (495 steps), the step size decayed as alpha / sqrt(t) for every "
        "optimizer (gradbench's inverse_sqrt; the paper states the decay for its logistic regression without restricting "
        "it to Adam), Adam (beta1 0.9, beta2 0.999, eps 1e-8) against SGD with Nesterov momentum 0.9, Adagrad and "
        "RMSprop (alpha 0.99), each with weight_decay 1e-4 as the L2 term (the paper does not print its lambda). "
        "Learning rates: each optimizer's best of twelve half-decades from 1e-3 to 316, chosen by the mean over 3 seeds of "
        "the final training NLL (the paper: 'searched over a dense grid', 'the best hyper-parameter setting'); the "
        "momentum is not searched. The claims compare the tuned optimizers' training NLL seed by seed. Figure 1 itself "
        "is not available to us as an image, so no number is read off it: the claims are the text's. --full runs the same "
        "on MNIST itself: one Linear(784, 10) on the raw pixels scaled to [0, 1], 468 steps of 128 an epoch, 45 epochs "
        "(21060 steps), the training NLL over all 60000 images."
    ),
    claims=_claims(),
    figure=figure,
    minutes=0.2,  # the sweep took 11 s with --executor process --workers 2 on a quiet 2-core machine (2026-11-30)
    full=True,
    full_note=(
        "the paper's own size on MNIST itself (needs MNIST in --data-dir, or --download): 144 runs of 21060 steps, 12.4 min "
        "wall with --workers 2 on 2 CPU cores, no GPU needed (measured on synthetic files of MNIST's format and size; real "
        "MNIST is not on this machine)"
    ),
    smoke={"steps": [20], "seeds": [0], "lrs": [0.001, 0.1, 1000.0]},  # the tuning still has a choice, the best in the middle
)
