"""Klambauer, Unterthiner, Mayr & Hochreiter 2017, "Self-Normalizing Neural Networks": SELU
units with LeCun-normal weights map a layer's activation mean and variance towards the fixed
point (0, 1), so both stay there through many layers; ReLU and tanh networks with their usual
initialisations do not.

Read from the monitor's activation statistics: the mean and the (population) variance over all
the values of a hidden layer's output on the step's minibatch, at the first detailed step (step
1, the initial weights) and at the last one (after training).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

from gradbench.reproduce.claims import Band, Claim, Published, Reproduction
from gradbench.reproduce.evidence import Evidence, MissingRuns, Run

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: --list stays light
    from matplotlib.figure import Figure

__all__ = ["REPRODUCTION", "layer_statistics", "deepest"]

TASK = "mnist1d_mlp[depth=64,width=128,standardize=true]"
NETWORKS = {"selu": "lecun_normal", "relu": "kaiming_normal", "tanh": "xavier_normal"}
# Theorem 1's domain for the mean and the variance of a layer's activations, within which the
# SELU mapping has its stable, attracting fixed point (0, 1) (for weights with mean in
# [-0.1, 0.1] and n times their variance in [0.95, 1.1]).
MEAN_RANGE = (-0.1, 0.1)
VARIANCE_RANGE = (0.8, 1.5)


def layer_statistics(evidence: Evidence, run: Run) -> dict[int, dict[int, tuple[float, float]]]:
    """Each detailed step's (mean, variance) of every hidden layer: step -> site -> (mean, variance)."""
    found: dict[int, dict[int, tuple[float, float]]] = {}
    for row in evidence.activations(run):
        if row["mean"] is not None and row["std"] is not None:
            found.setdefault(int(row["step"]), {})[int(row["site_index"])] = (float(row["mean"]), float(row["std"]) ** 2)
    if not found:
        raise MissingRuns(f"run {run['key']} has no activation statistics (detail_every 0?)")
    return found


def deepest(evidence: Evidence, run: Run, *, when: str, what: str) -> float:
    """The deepest hidden layer's mean (``what="mean"``) or variance at the first (``when="init"``)
    or the last (``when="trained"``) detailed step."""
    by_step = layer_statistics(evidence, run)
    sites = by_step[min(by_step) if when == "init" else max(by_step)]
    mean, variance = sites[max(sites)]
    return mean if what == "mean" else variance


def _measure(activation: str, when: str, what: str) -> Callable[[Evidence], list[float]]:
    return lambda evidence: evidence.per_seed(
        lambda run: deepest(evidence, run, when=when, what=what), task=TASK, activation=activation, init=NETWORKS[activation],
    )


_THEOREM = "Theorem 1 (stated as recalled from the paper; the stored excerpts confirm only the fixed point (0, 1))"
_MEAN_WHY = "Theorem 1's domain for the mean, [-0.1, 0.1], within which the mapping stays and converges to 0"
_VARIANCE_WHY = "Theorem 1's domain for the variance, [0.8, 1.5], within which the mapping stays and converges to 1"


def _selu_claims(when: str, words: str) -> tuple[Claim, Claim]:
    return (
        Claim(
            f"selu_mean_{when}", f"SELU + LeCun normal, 64 layers, {words}: the deepest layer's activation mean",
            Published("0 (the fixed point (mean, variance) = (0, 1))", f"Abstract, Sec. 3, {_THEOREM}", 0.0),
            Band(*MEAN_RANGE, _MEAN_WHY), _measure("selu", when, "mean"),
        ),
        Claim(
            f"selu_variance_{when}", f"SELU + LeCun normal, 64 layers, {words}: the deepest layer's activation variance",
            Published("1 (the fixed point (mean, variance) = (0, 1))", f"Abstract, Sec. 3, {_THEOREM}", 1.0),
            Band(*VARIANCE_RANGE, _VARIANCE_WHY), _measure("selu", when, "variance"),
        ),
    )


def _control_claims(when: str, words: str) -> tuple[Claim, Claim]:
    return (
        Claim(
            f"relu_mean_{when}", f"ReLU + He et al.'s init, 64 layers, {words}: the deepest layer's activation mean is not near 0",
            Published("ReLU cannot self-normalise: no negative values to control the mean", "Sec. 3 (the four properties a self-normalising activation needs)"),
            Band(MEAN_RANGE[1], None, "above Theorem 1's mean domain: a ReLU unit's output is never negative, so its mean is positive"),
            _measure("relu", when, "mean"),
        ),
        Claim(
            f"tanh_variance_{when}", f"tanh + Glorot's init, 64 layers, {words}: the deepest layer's activation variance is not near 1",
            Published("tanh cannot self-normalise: no slope above 1 to increase a small variance", "Sec. 3 (the four properties a self-normalising activation needs)"),
            Band(None, VARIANCE_RANGE[0], "below Theorem 1's variance domain: tanh's slope is at most 1, so the variance can only shrink layer after layer"),
            _measure("tanh", when, "variance"),
        ),
    )


CLAIMS = (
    *_selu_claims("init", "at initialisation"),
    *_control_claims("init", "at initialisation"),
    *_selu_claims("trained", "after 900 updates"),
    *_control_claims("trained", "after 900 updates"),
)


def figure(evidence: Evidence) -> Figure:
    """The mean and the variance of every hidden layer, at initialisation (solid) and after
    training (dashed), mean over seeds, with Theorem 1's domain shaded."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8), layout="constrained")
    mean_axes, variance_axes = fig.subplots(1, 2)
    for (activation, init), color in zip(NETWORKS.items(), ("tab:green", "tab:red", "tab:blue")):
        runs = evidence.runs(task=TASK, activation=activation, init=init)
        for when, style in (("init", "-"), ("trained", "--")):
            means: dict[int, list[float]] = {}
            variances: dict[int, list[float]] = {}
            for run in runs:
                by_step = layer_statistics(evidence, run)
                for site, (mean, variance) in by_step[min(by_step) if when == "init" else max(by_step)].items():
                    means.setdefault(site + 1, []).append(mean)
                    variances.setdefault(site + 1, []).append(variance)
            if not means:
                continue
            layers = sorted(means)
            label = f"{activation} + {init}, {'initialisation' if when == 'init' else 'trained'} (n={len(runs)})"
            mean_axes.plot(layers, [statistics.fmean(means[layer]) for layer in layers], style, color=color, label=label)
            variance_axes.plot(layers, [statistics.fmean(variances[layer]) for layer in layers], style, color=color, label=label)
    mean_axes.axhspan(*MEAN_RANGE, color="grey", alpha=0.2, label="Theorem 1's domain")
    variance_axes.axhspan(*VARIANCE_RANGE, color="grey", alpha=0.2, label="Theorem 1's domain")
    mean_axes.set(title="activation mean per layer", xlabel="hidden layer", ylabel="mean")
    variance_axes.set(title="activation variance per layer", xlabel="hidden layer", ylabel="variance", yscale="log")
    variance_axes.legend(fontsize=7, loc="lower left")
    for axes in (mean_axes, variance_axes):
        axes.grid(alpha=0.3)
    fig.suptitle("Klambauer et al. 2017 on MNIST-1D: 64 hidden layers of 128 units, standardised inputs", fontsize=10)
    return fig


PROTOCOL = (
    "Klambauer et al. prove (Theorem 1) that for SELU units (lambda 1.0507, alpha 1.6733) whose weights have "
    "mean in [-0.1, 0.1] and n times their variance in [0.95, 1.1], the map from one layer's activation (mean, "
    "variance) to the next's keeps them in [-0.1, 0.1] x [0.8, 1.5] and draws them to the fixed point (0, 1); "
    "their experiments train SNNs of up to 32 layers (UCI, Tox21, HTRU2; MNIST and CIFAR-10 in Figure 1). Here: "
    "MLPs of 64 hidden layers of 128 units on MNIST-1D with every input feature standardised to mean 0 and "
    "variance 1 over the training set (4000 examples, generated offline): SELU with LeCun-normal weights "
    "N(0, 1/fan_in), against the controls ReLU with He et al.'s N(0, 2/fan_in) and tanh with Glorot's normal "
    "N(0, 2/(fan_in + fan_out)); biases zero; plain SGD at lr 0.01 (the smallest of the paper's UCI grid "
    "{0.01, 0.1, 1}; not tuned), minibatches of 64, 1000 updates (16 epochs), 3 seeds. The mean and the "
    "variance are over all values of a layer's output on the step's minibatch (units and examples together), "
    "at step 1 (the initial weights) and at step 901, the last detailed step (after 900 updates); the claims "
    "read the deepest (64th) layer."
)

REPRODUCTION = Reproduction(
    name="selu",
    title="Klambauer et al. 2017: SELU with LeCun-normal weights keeps zero mean and unit variance through 64 layers",
    citation="Günter Klambauer, Thomas Unterthiner, Andreas Mayr, Sepp Hochreiter (2017), \"Self-Normalizing Neural Networks\", NeurIPS 2017, arXiv:1706.02515",
    protocol=PROTOCOL,
    claims=CLAIMS,
    figure=figure,
    minutes=1.1,  # the sweep took 63 s with --executor process --workers 2 on a quiet 2-core machine (2026-11-30)
    full=False,
    full_note="the paper's benchmarks (121 UCI sets, Tox21, HTRU2) are not in gradbench; the default MLP is already deeper than the paper's deepest",
    smoke={"steps": [20], "seeds": [0], "detail_every": 10},
)
