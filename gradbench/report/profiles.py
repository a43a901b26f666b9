"""Performance profiles: how often each optimizer gets to the target within a factor of the best.

For a set of problems P and solvers S, with t(p, s) the cost of solver s on problem p (steps or
seconds to the target; infinite when it never gets there), the performance ratio is
r(p, s) = t(p, s) / min over s' of t(p, s'), and the profile of s is

.. math::

    \\rho_s(\\tau) = \\frac{|\\{p \\in P : r(p, s) \\le \\tau\\}|}{|P|},

the fraction of problems s solves within a factor tau of the best solver. rho_s(1) is how often s
is the fastest; rho_s at large tau, how often it gets there at all. The score is the area under
rho_s from 1 to ``tau_max``, divided by ``tau_max - 1`` (1: fastest everywhere; 0: never there),
as AlgoPerf scores its submissions.

Here a *solver* is an optimizer (the row axes of the report) and a *problem* is every other axis
(task, activation, init, clip, ...) except the seed, the run's budget (steps, batch size: a
full-batch optimizer runs on the same problem as a mini-batch one) and its measuring cadence
(``eval_every``, ``record_every``, ``detail_every``). The learning rate, batch size and step
budget join the solver (``sgd, lr=0.1, batch_size=8``) when they vary between runs of one
optimizer on one problem (several learning rates when untuned, a grid over batch sizes), so
that seeds are the only thing a cost aggregates over. The cost of a (problem, solver) pair is the
lower median (``statistics.median_low``) over its seeds, a seed that never reached the target
(or diverged, or failed) counting as infinite: the cost is finite exactly when at least half of
its seeds reached the target (one of two does), and it is then the cost of one of its seeds.
A solver not run on a problem counts as not solving it, so profiles suit grids in which every
solver runs on every problem.

References:
    Dolan & Moré 2002, "Benchmarking optimization software with performance profiles",
    Mathematical Programming 91, https://arxiv.org/abs/cs/0102001.
    Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms" (AlgoPerf),
    https://arxiv.org/abs/2306.07179.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradbench.report.pivot import axis_choices, run_axes

__all__ = ["PROFILE_MEASURES", "Profiles", "performance_profiles", "profile_text", "profile_csv", "TAUS"]

# --profile-measure name -> (run column, unit)
PROFILE_MEASURES = {"steps_to_target": ("steps_to_target", "steps"), "time_to_target": ("time_to_target_s", "seconds")}
TAUS = (1.0, 1.25, 1.5, 2.0, 4.0)
# Not part of a problem: the seed, the run's budget, and how often it was measured.
_BUDGET = ("steps", "batch_size", "seed", "eval_every", "record_every", "detail_every")
# Added to the solver, named in its label, where they vary within a (problem, solver) pair.
_SOLVER_BUDGET = ("lr", "batch_size", "steps")


@dataclass
class Profiles:
    """Performance profiles of one measure.

    Attributes:
        measure: ``steps_to_target`` or ``time_to_target``.
        solvers: Solver labels, in first-seen order.
        problems: Problem labels.
        costs: ``costs[problem][solver]``: the lower median cost over seeds (``inf``: fewer
            than half the seeds reached the target, or not run).
        ratios: ``ratios[solver]``: r(p, s) for each problem, in ``problems`` order.
        tau_max: Upper end of the score's integral.
    """

    measure: str
    solvers: list[str]
    problems: list[str]
    costs: dict[str, dict[str, float]]
    ratios: dict[str, list[float]]
    tau_max: float = 4.0

    def rho(self, solver: str, tau: float) -> float:
        """Fraction of problems ``solver`` solves within ``tau`` of the best."""
        ratios = self.ratios[solver]
        return sum(r <= tau for r in ratios) / len(ratios) if ratios else 0.0

    def score(self, solver: str) -> float:
        """Area under rho from 1 to ``tau_max``, over ``tau_max - 1``: a step function, so exactly
        the mean over problems of the share of [1, tau_max] lying at or above the ratio."""
        ratios = self.ratios[solver]
        if not ratios:
            return 0.0
        span = self.tau_max - 1.0
        return statistics.fmean(max(0.0, self.tau_max - max(r, 1.0)) / span if math.isfinite(r) else 0.0 for r in ratios)


def _label(axes: Mapping[str, Any], names: Sequence[str]) -> str:
    def text(name: str) -> str:
        value = f"{axes[name]:g}" if isinstance(axes[name], float) else str(axes[name])
        return f"{name}={value}" if isinstance(axes[name], float) or name in _SOLVER_BUDGET else value  # a bare 8 says nothing

    return ", ".join(text(n) for n in names if axes.get(n) is not None)


def performance_profiles(
    runs: Sequence[Mapping[str, Any]], measure: str = "steps_to_target", solver_axes: Sequence[str] = ("optimizer",), tau_max: float = 4.0
) -> Profiles:
    """Profiles of ``runs`` on ``measure`` (``PROFILE_MEASURES``), solvers by ``solver_axes``.

    The learning rate, batch size and step budget join the solver axes, in that order, when they
    vary between runs of the same solver and problem: each value is then a solver of its own.

    Raises:
        ValueError: for an unknown measure or solver axis.
    """
    if measure not in PROFILE_MEASURES:
        raise ValueError(f"unknown profile measure {measure!r}; choose from: {', '.join(PROFILE_MEASURES)}")
    if tau_max <= 1:
        raise ValueError(f"invalid tau_max {tau_max!r}: must be above 1")
    column = PROFILE_MEASURES[measure][0]
    choices = axis_choices(runs) if runs else ["optimizer"]
    for name in solver_axes:
        if name not in choices:
            raise ValueError(f"unknown --rows axis {name!r}; choose from: {', '.join(choices)}")
    described = []
    for run in runs:
        axes = run_axes(run)
        axes["task"] = json.loads(run["config"])["task"]
        described.append((run, axes))
    solver_names = list(solver_axes)
    problem_names = sorted({n for _, a in described for n in a} - set(solver_names) - set(_BUDGET) - {"lr"})
    # An axis that varies between runs of one solver on one problem (several learning rates
    # when untuned; a grid over batch sizes or step budgets) makes each of its values a solver
    # of its own: the median over seeds must not mix configurations.
    def key(axes: Mapping[str, Any], names: Sequence[str]) -> str:
        return json.dumps([axes.get(n) for n in names], default=str)

    for name in (n for n in _SOLVER_BUDGET if n not in solver_names):
        values: dict[tuple[str, str], set[str]] = {}
        for _, axes in described:
            values.setdefault((key(axes, problem_names), key(axes, solver_names)), set()).add(key(axes, [name]))
        if any(len(v) > 1 for v in values.values()):
            solver_names.append(name)
    # The label shows only the problem axes that vary, so problems read as what tells them apart.
    varying = [n for n in problem_names if len({json.dumps(a.get(n), default=str) for _, a in described}) > 1] or ["task"]
    times: dict[str, dict[str, list[float]]] = {}
    solvers: list[str] = []
    for run, axes in described:
        problem, solver = _label(axes, varying), _label(axes, solver_names)
        value = run.get(column)
        cost = float(value) if run["status"] == "done" and value is not None and math.isfinite(value) else math.inf
        times.setdefault(problem, {}).setdefault(solver, []).append(cost)
        if solver not in solvers:
            solvers.append(solver)
    problems = list(times)
    # median_low: finite exactly when at least half the seeds reached the target (1 of 2 does),
    # and always the cost of a seed that ran.
    costs = {p: {s: statistics.median_low(times[p][s]) if s in times[p] else math.inf for s in solvers} for p in problems}
    ratios: dict[str, list[float]] = {s: [] for s in solvers}
    for problem in problems:
        best = min(costs[problem].values())
        for solver in solvers:
            cost = costs[problem][solver]
            if not math.isfinite(cost):
                ratios[solver].append(math.inf)
            elif best == 0:  # reached at the initial evaluation: a trivial problem, all who reach it tie
                ratios[solver].append(1.0)
            else:
                ratios[solver].append(cost / best)
    return Profiles(measure, solvers, problems, costs, ratios, tau_max)


def profile_text(profiles: Profiles, taus: Sequence[float] = TAUS) -> str:
    """Markdown: one row per solver, rho at each tau, and the score."""
    unit = PROFILE_MEASURES[profiles.measure][1]
    lines = [
        f"Performance profile on {profiles.measure.replace('_', ' ')} ({unit}) over {len(profiles.problems)} problems: "
        f"the fraction solved within tau x the best; score = area under the profile for tau in [1, {profiles.tau_max:g}].",
        "",
        "| solver | " + " | ".join(f"tau={t:g}" for t in taus) + " | score |",
        "|---|" + "|".join("---:" for _ in (*taus, 0)) + "|",
    ]
    for solver in profiles.solvers:
        cells = [f"{profiles.rho(solver, t):.2f}" for t in taus]
        lines.append(f"| {solver} | " + " | ".join(cells) + f" | {profiles.score(solver):.3f} |")
    return "\n".join(lines) + "\n"


def profile_csv(profiles: Profiles, taus: Sequence[float] = TAUS, header: bool = True) -> str:
    """CSV: one row per solver: the measure, the solver, rho at each tau, the score, the number
    of problems."""
    lines = ["measure,solver," + ",".join(f"rho_tau_{t:g}" for t in taus) + ",score,problems"] if header else []
    for solver in profiles.solvers:
        quoted = '"' + solver.replace('"', '""') + '"'
        values = [repr(profiles.rho(solver, t)) for t in taus]
        lines.append(f"{profiles.measure},{quoted}," + ",".join(values) + f",{profiles.score(solver)!r},{len(profiles.problems)}")
    return "\n".join(lines) + "\n"
