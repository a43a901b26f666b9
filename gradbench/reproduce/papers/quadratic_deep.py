"""DeepOBS's ``quadratic_deep``: the test loss at the known optimum, and the final test losses of
DeepOBS's baselines (SGD, Momentum, Adam) with DeepOBS's protocol.

The problem (``gradbench.tasks.quadratic``): ``l(theta; x) = 0.5 (theta - x)^T Q (theta - x)`` with
``x ~ N(0, sigma^2 I)``, ``sigma = 0.6``, 100 dimensions, ``n = 1000`` training and 1000 test
points. The training loss is minimised at the mean training point ``xbar``; its test loss, in
expectation over the training and the test draws, is

    E[0.5 (xbar - x)^T Q (xbar - x)] = 0.5 sigma^2 tr(Q) (1 + 1/n),

since ``xbar - x ~ N(0, sigma^2 (1 + 1/n) I)``. One 1000-point test set's mean loss scatters
around that with standard deviation ``sqrt(0.5 sigma^4 tr(Q^2) / 1000)`` (the variance of a
Gaussian quadratic form is ``2 tr((Q/2 Sigma)^2)``). Full-batch gradient descent converges to
``xbar``, so its final test loss measures the optimum.

DeepOBS's protocol: batches of 128 (each epoch's remainder dropped, 7 steps an epoch), 100
epochs, the learning rate chosen on the grid ``10^(-5 + k/5)`` by the final test loss of one
seed, then rerun with ten seeds. Its baselines ship as JSON files in its repository
(``deepobs/baselines/quadratic_deep``); the test loss there is the mean over the first 896 test
points (7 test batches of 128, the remainder dropped), ours over all 1000.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gradbench.reproduce.claims import Band, Claim, Published, Reproduction
from gradbench.reproduce.evidence import Evidence, MissingRuns, Run, metric

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: --list stays light
    from matplotlib.figure import Figure

__all__ = ["REPRODUCTION", "BASELINES", "SIGMA", "TRACE_Q", "TRACE_Q2", "tuned_lr", "tuned_final_test_loss", "gd_final_test_loss"]

# The problem's constants: the noise, the training set size, and tr(Q), tr(Q^2) of DeepOBS's
# Hessian (RandomState(42): 90 eigenvalues in U(0, 1), 10 in U(30, 60)), computed in float64
# from gradbench.tasks.datasets.quadratic_deep_hessian (a test recomputes them).
SIGMA = 0.6
NUM_TRAIN = 1000
TRACE_Q = 477.612279595014
TRACE_Q2 = 19585.05141358999
EXPECTED_OPTIMUM = 0.5 * SIGMA**2 * TRACE_Q * (1 + 1 / NUM_TRAIN)  # 86.056
TEST_SET_STD = math.sqrt(0.5 * SIGMA**4 * TRACE_Q2 / 1000)  # 1.127: one test set's scatter
EXACT_OPTIMUM = 87.12873617235233  # the test loss (all 1000 points) at the mean training point, float64
OPTIMUM_896 = 87.04600799056298  # the same on DeepOBS's 896 test points
SET_OFFSET = EXACT_OPTIMUM - OPTIMUM_896  # +0.083: our test set's loss is higher at the optimum

# optimizer -> (DeepOBS's name, its tuned learning rate, the final test losses of the baseline
# runs read from its repository: {seed: the last entry of "test_losses"}, the band's half-width
# above the offset and why)
BASELINES: dict[str, tuple[str, float, dict[int, float], float, str]] = {
    "sgd": ("GradientDescentOptimizer", 0.015848931925, {43: 87.52840859549386, 45: 87.52428436279297}, 0.1,
            "its baseline curve is smooth and its seeds agree within 0.005"),
    "momentum": ("MomentumOptimizer (momentum 0.99)", 0.0025118864315, {45: 87.0701174054827, 46: 87.04070063999721}, 0.3,
                 "its baseline curve still swings between 87.04 and 87.35 from epoch to epoch over the last ten epochs"),
    "adam": ("AdamOptimizer", 0.039810717055, {48: 87.12100219726562, 51: 87.12828935895648}, 0.1,
             "its baseline curve is smooth and its seeds agree within 0.01"),
}
_SPECS = {"sgd": "sgd", "momentum": "momentum[momentum=0.99]", "adam": "adam"}  # how the suite's runs are selected
_GRID_STEP = 10 ** 0.2  # DeepOBS's grid: five values a decade


def _final_test_loss(run: Run) -> float:
    """A run's final test loss; a diverged or failed run, or one without it, counts as infinite."""
    value = run.get("final_test_loss")
    if run["status"] != "done" or value is None or not math.isfinite(value):
        return math.inf
    return float(value)


def tuned_lr(evidence: Evidence, optimizer: str) -> float:
    """DeepOBS's tuning rule: the learning rate whose run on the tuning seed (the suite's first)
    has the lowest final test loss; ties go to the smaller rate."""
    seeds = evidence.seeds(optimizer=_SPECS[optimizer])
    if not seeds:
        raise MissingRuns(f"the suite has no run of optimizer={optimizer} at this size")
    tuning = evidence.require(optimizer=_SPECS[optimizer], seed=seeds[0])  # the whole grid of the tuning seed
    best = min(tuning, key=lambda run: (_final_test_loss(run), float(run["lr"])))
    return float(best["lr"])


def tuned_final_test_loss(optimizer: str) -> Callable[[Evidence], Sequence[float]]:
    """The final test loss of each seed at the tuned learning rate (a diverged run: ``nan``)."""

    def measure(evidence: Evidence) -> Sequence[float]:
        lr = tuned_lr(evidence, optimizer)
        return evidence.per_seed(metric("final_test_loss"), optimizer=_SPECS[optimizer], lr=lr)  # a diverged seed: nan

    return measure


def _lr_measure(optimizer: str) -> Callable[[Evidence], Sequence[float]]:
    return lambda evidence: [tuned_lr(evidence, optimizer)]


def _baseline_claims(optimizer: str) -> tuple[Claim, Claim]:
    name, lr, finals, width, why = BASELINES[optimizer]
    seeds = ", ".join(str(seed) for seed in finals)
    mean = sum(finals.values()) / len(finals)
    folder = f"deepobs/baselines/quadratic_deep/{name.split(' ')[0]}"
    loss = Claim(
        id=f"{optimizer}_final_test_loss",
        statement=f"DeepOBS's {name} baseline: final test loss after 100 epochs at its tuned learning rate",
        published=Published(f"{mean:.2f}", f"DeepOBS repository, {folder}/…lr__{lr:.10e}…, random_seed {seeds}: last test_losses entry, mean", mean),
        band=Band(round(mean + SET_OFFSET - 0.1, 2), round(mean + SET_OFFSET + width, 2),
                  f"DeepOBS's value plus {SET_OFFSET:.3f}, the difference of the two test sets at the optimum (DeepOBS averages the first "
                  f"896 test points, we all 1000), -0.1 / +{width:g}: {why}"),
        measure=tuned_final_test_loss(optimizer),
    )
    rate = Claim(
        id=f"{optimizer}_tuned_lr",
        statement=f"the learning rate DeepOBS's tuning rule picks for {name}",
        published=Published(f"{lr:.4g}", f"DeepOBS repository: the {folder} setting rerun with ten seeds", lr),
        band=Band(round(lr / _GRID_STEP * 0.999, 6), round(lr * _GRID_STEP * 1.001, 6),
                  "the same grid value or a neighbour (the grid has five values a decade): one seed's final test loss decides between close rates"),
        measure=_lr_measure(optimizer),
    )
    return loss, rate


def gd_final_test_loss(evidence: Evidence) -> Sequence[float]:
    """Full-batch GD's final test loss: one run is enough (it draws no batches), so the
    suite runs it on the first seed only, and the other seeds are not asked for."""
    return evidence.per_seed(metric("final_test_loss"), optimizer="gd")


def _optimum_claims() -> tuple[Claim, Claim]:
    expected = Claim(
        id="optimum_expected",
        statement="full-batch GD's final test loss is the optimum's: 0.5 sigma^2 tr(Q) (1 + 1/n) in expectation over the noise",
        published=Published(f"{EXPECTED_OPTIMUM:.2f}", f"derived from DeepOBS's definition (sigma = 0.6, n = 1000, tr Q = {TRACE_Q:.2f})", EXPECTED_OPTIMUM),
        band=Band(round(EXPECTED_OPTIMUM - 3 * TEST_SET_STD, 2), round(EXPECTED_OPTIMUM + 3 * TEST_SET_STD, 2),
                  f"± 3 standard deviations of one 1000-point test set's mean loss, sqrt(0.5 sigma^4 tr(Q^2) / 1000) = {TEST_SET_STD:.2f}"),
        measure=gd_final_test_loss,
    )
    exact = Claim(
        id="optimum_exact",
        statement="full-batch GD reaches the minimiser of the training loss, the mean training point",
        published=Published(f"{EXACT_OPTIMUM:.3f}", "computed: the test loss at the mean training point, float64 (gradbench.tasks.quadratic.optimum_test_loss)",
                            EXACT_OPTIMUM),
        band=Band(round(EXACT_OPTIMUM - 0.01, 3), round(EXACT_OPTIMUM + 0.01, 3),
                  "float32 training, and the flattest directions (eigenvalue 0.0055) not fully converged after 5000 steps: a few thousandths"),
        measure=gd_final_test_loss,
    )
    return expected, exact


def figure(evidence: Evidence) -> Figure:
    """Left: the final test loss of the tuning seed against the learning rate (DeepOBS's
    learning-rate sensitivity plot), DeepOBS's tuned rates marked. Right: the test loss over
    training at each optimizer's tuned rate (every seed), with the optimum and DeepOBS's values."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    sensitivity, curves = fig.subplots(1, 2)
    colours = {"sgd": "tab:blue", "momentum": "tab:orange", "adam": "tab:green"}
    tuning_seed = min(evidence.seeds() or [0])
    for optimizer, colour in colours.items():
        name, published_lr, finals, _, _ = BASELINES[optimizer]
        runs = sorted((run for run in evidence.runs(optimizer=_SPECS[optimizer]) if int(run["seed"]) == tuning_seed), key=lambda run: float(run["lr"]))
        if not runs:
            raise MissingRuns(f"no stored run of optimizer={optimizer}")
        sensitivity.plot([float(run["lr"]) for run in runs], [min(_final_test_loss(run), 1e6) for run in runs], "o-", color=colour, markersize=3, label=optimizer)
        sensitivity.axvline(published_lr, color=colour, linestyle=":", linewidth=1)
        lr = tuned_lr(evidence, optimizer)
        for run in evidence.runs(optimizer=_SPECS[optimizer]):
            if not math.isclose(float(run["lr"]), lr, rel_tol=1e-9):
                continue
            rows = [row for row in evidence.evaluations(run) if row["test_loss"] is not None]
            curves.plot([row["step"] for row in rows], [row["test_loss"] for row in rows], color=colour, linewidth=1, alpha=0.8,
                        label=f"{optimizer}, lr={lr:.3g}" if int(run["seed"]) == tuning_seed else None)
        mean = sum(finals.values()) / len(finals)
        curves.plot([700], [mean + SET_OFFSET], marker="_", color=colour, markersize=16, markeredgewidth=2)
    sensitivity.axhline(EXACT_OPTIMUM, color="black", linewidth=1, label="optimum")
    sensitivity.set_xscale("log")
    sensitivity.set_yscale("log")
    sensitivity.set_ylim(80, 1000)
    sensitivity.set_xlabel("learning rate (dotted: DeepOBS's tuned rates)")
    sensitivity.set_ylabel(f"final test loss, seed {tuning_seed} (diverged: off the top)")
    sensitivity.set_title("learning-rate sensitivity (700 steps)")
    sensitivity.legend(fontsize=8)
    curves.axhline(EXACT_OPTIMUM, color="black", linewidth=1, label=f"optimum {EXACT_OPTIMUM:.2f}")
    curves.set_ylim(86.5, 92)
    curves.set_xlabel("step (7 a epoch)")
    curves.set_ylabel("test loss")
    curves.set_title("at the tuned rates; bars: DeepOBS's final values (+0.083)")
    curves.legend(fontsize=8)
    return fig


def _claims() -> tuple[Claim, ...]:
    claims: list[Any] = [*_optimum_claims()]
    for optimizer in BASELINES:
        claims.extend(_baseline_claims(optimizer))
    return tuple(claims)


REPRODUCTION = Reproduction(
    name="quadratic_deep",
    title="DeepOBS 2019: quadratic_deep's optimum and the SGD, Momentum and Adam baselines",
    citation="F. Schneider, L. Balles and P. Hennig, 2019, DeepOBS: A Deep Learning Optimizer Benchmark Suite, ICLR 2019 (arXiv:1903.05499)",
    protocol=(
        "DeepOBS's quadratic_deep as gradbench's task defines it (checked against DeepOBS's code: Hessian R^T diag(lambda) R from "
        "RandomState(42), 90 eigenvalues in U(0,1) and 10 in U(30,60); 1000 training and 1000 test points N(0, 0.6^2 I) from "
        "RandomState(42) and (43); theta starts at ones; the initial test loss on DeepOBS's 896 test points, 353.4468, equals "
        "its baselines' first entry). The optimum: full-batch gradient descent (lr 0.035, 5000 steps) converges to the mean "
        "training point, whose test loss is compared with 0.5 sigma^2 tr(Q)(1 + 1/n), its expectation over the noise, and "
        "with its exact value. The baselines: SGD, Momentum (0.99, heavy ball) and Adam (torch defaults), batches of 128 "
        "(each epoch's remainder dropped, 7 steps an epoch), 700 steps = DeepOBS's 100 epochs; the learning rate chosen, as "
        "DeepOBS chose its baselines', by the lowest final test loss of one seed (seed 0) on DeepOBS's logarithmic grid "
        "10^(-5 + k/5), then every seed's final test loss at that rate. Default size: the 21 grid values from 1e-4 to 1 and "
        "3 seeds (DeepOBS: all 36 values and 10 seeds, which --full runs). Differences: torch instead of TensorFlow; the batch "
        "order: DeepOBS's input pipeline draws one order per run and repeats it every epoch (its baselines' minibatch losses "
        "repeat with period 7, and its seeds end within 0.005 of each other), ours reshuffles every epoch (our seeds scatter "
        "by 0.1-0.2); the test loss is the mean over all 1000 test points, DeepOBS's over the first 896 (7 batches of 128), "
        "which is 0.083 lower at the optimum; DeepOBS's values are those of the baseline JSON files of its repository that "
        "we read (two seeds per optimizer), the last of each run's test_losses."
    ),
    claims=_claims(),
    figure=figure,
    minutes=0.3,  # the sweep took 17 s with --executor process --workers 2 on a quiet 2-core machine (2026-11-30)
    full=True,
    full_note="DeepOBS's own size: the whole 36-value learning-rate grid (1e-5 to 100) and 10 seeds, 1081 runs: 1.5 min wall with --workers 2 on 2 CPU cores, no GPU needed",
)
