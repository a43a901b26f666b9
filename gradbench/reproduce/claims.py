"""A published result as gradbench checks it: the number as the paper prints it, the band our
measurement must fall in, and why that band; and a reproduction: a suite, its claims, the
analysis that measures each claim from the stored runs, and the figure.

A band is fixed from the paper and the protocol before anything runs (seed spread, smaller data,
fewer steps), never widened to fit a result: a result outside it is reported as outside.
Torch-free: listing reproductions and comparing stored runs import no torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradbench.reproduce.evidence import Evidence

__all__ = ["Published", "Band", "Claim", "Reproduction", "Measured", "Outcome", "VERDICTS", "judge"]

# What a comparison can say about one claim: ``error`` is a measure that raised (a bug, or a
# record it did not expect); the others' tables are still printed.
VERDICTS = ("within", "outside", "missing", "error")


@dataclass(frozen=True)
class Published:
    """A paper's number, as printed, and where it is printed.

    ``value`` is the number in the claim's unit (``None`` for a statement without one, e.g.
    "training stalls"); ``printed`` is the text as the paper has it ("94 %", "stalls").
    """

    printed: str
    source: str  # "Table 1", "Figure 2 (read off the plot)", "Sec. 4.2"
    value: float | None = None


@dataclass(frozen=True)
class Band:
    """The interval ``[low, high]`` (either end open when ``None``) the measured mean must fall
    in, and one sentence on why it is that wide."""

    low: float | None
    high: float | None
    why: str

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ValueError("a band needs at least one end")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"band [{self.low}, {self.high}] is empty")

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def text(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        if self.low is None:
            return f"<= {high}"
        if self.high is None:
            return f">= {low}"
        return f"[{low}, {high}]"


@dataclass(frozen=True)
class Claim:
    """One number of a paper, and how to measure it from the stored runs.

    ``measure(evidence)`` returns one value per seed, in ``unit`` (a run that gives no value, a
    diverged one say, gives ``nan`` if the claim has no better number for it); it raises
    ``MissingRuns`` when the runs it needs are not stored.
    """

    id: str
    statement: str  # "the paper's CNN reaches 94% test accuracy"
    published: Published
    band: Band
    measure: Callable[[Evidence], Sequence[float]]
    unit: str = ""  # "%", "", "x"


@dataclass(frozen=True)
class Reproduction:
    """A paper's results, reproduced: the suite that runs them and the claims it checks.

    The suite files live in ``gradbench/suites/reproduce/``: ``NAME.toml`` (the default size,
    minutes on two CPU cores) and, where one GPU can run it, ``NAME.full.toml`` (the paper's own
    size). ``figure(evidence)`` draws the paper's figure or table from the runs as a matplotlib
    ``Figure``; ``protocol`` is a paragraph on what runs and how it differs from the paper.
    """

    name: str
    title: str  # "Glorot & Bengio 2010: saturation and the normalised initialisation"
    citation: str  # authors, year, title, venue
    protocol: str
    claims: tuple[Claim, ...]
    figure: Callable[[Evidence], Any] | None = None
    minutes: float = 5.0  # wall minutes of the default size on two CPU cores with --executor process --workers 2, as measured
    full: bool = False  # whether NAME.full.toml exists
    full_note: str = ""  # what --full runs, and where it needs a GPU or real datasets
    # The CI size: overrides of every grid of the default suite (a setting given here reaches
    # every grid, so keep it to what every grid can take).
    smoke: dict[str, Any] = field(default_factory=lambda: {"steps": [20], "seeds": [0]})

    def __post_init__(self) -> None:
        ids = [claim.id for claim in self.claims]
        if len(set(ids)) != len(ids):
            raise ValueError(f"reproduction {self.name!r} repeats a claim id: {ids}")


@dataclass(frozen=True)
class Measured:
    """A claim's values over seeds (``nan`` kept: it counts against the claim)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        """The mean over seeds; ``nan`` if any seed is ``nan``, infinite if one is (and none of
        the other sign)."""
        if not self.values or any(math.isnan(v) for v in self.values):
            return math.nan
        infinite = {math.copysign(1.0, v) for v in self.values if math.isinf(v)}
        if infinite:
            return math.nan if len(infinite) == 2 else math.inf * infinite.pop()
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """The sample standard deviation of the finite values (0 with fewer than two)."""
        finite = [v for v in self.values if math.isfinite(v)]
        return statistics.stdev(finite) if len(finite) > 1 else 0.0

    @property
    def non_finite(self) -> int:
        return sum(not math.isfinite(v) for v in self.values)


@dataclass(frozen=True)
class Outcome:
    """A claim compared: the measurement (``None`` when runs are missing or the measure
    raised), the verdict and, for ``missing`` and ``error``, what is missing or went wrong."""

    claim: Claim
    measured: Measured | None
    verdict: str
    reason: str = ""  # what is missing, or the error


def judge(claim: Claim, evidence: Evidence) -> Outcome:
    """Measure ``claim`` from ``evidence`` and say whether the mean over seeds is in its band."""
    from gradbench.reproduce.evidence import MissingRuns

    try:
        values = tuple(float(v) for v in claim.measure(evidence))
    except MissingRuns as error:
        return Outcome(claim, None, "missing", reason=str(error))
    except Exception as error:  # one claim's bug must not cost the table of the others, after a long sweep
        return Outcome(claim, None, "error", reason=f"{type(error).__name__}: {error}")
    if not values:
        return Outcome(claim, None, "missing", reason="the measure returned no value")
    measured = Measured(values)
    return Outcome(claim, measured, "within" if claim.band.contains(measured.mean) else "outside")
