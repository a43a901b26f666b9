"""Seed-to-seed noise: bootstrap intervals over seeds, and whether one configuration is better
than another by more than that noise.

A cell's 95% interval is the percentile bootstrap interval of its mean: the 2.5th and 97.5th
percentiles of the means of ``RESAMPLES`` resamples of its seeds, drawn with replacement
(Efron & Tibshirani 1993, ch. 13). One configuration is *clearly better* than another when the
95% bootstrap interval of the difference of their means (each configuration's seeds resampled
on its own) lies wholly on its side of zero. Both need two seeds or more: one seed says nothing
about the noise. The generator is seeded, so a table prints the same every time.

numpy only (a declared dependency), imported when first needed: ``gradbench report`` in
Markdown stays quick to start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RESAMPLES", "LEVEL", "mean_interval", "clearly_better", "RULE"]

RESAMPLES = 2000
LEVEL = 0.95
RULE = "bold: best, and better than every other entry of its column by more than the seed noise (95% bootstrap interval of the difference of means over seeds excludes 0; needs >= 2 seeds per entry)"


def _resampled_means(values: Sequence[float], rng: Any) -> Any:
    import numpy as np

    data = np.asarray(values, dtype=float)
    picks = rng.integers(0, len(data), size=(RESAMPLES, len(data)))
    return data[picks].mean(axis=1)


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The 95% percentile bootstrap interval of the mean of ``values``; ``None`` for fewer than two."""
    import numpy as np

    if len(values) < 2:
        return None
    means = _resampled_means(values, np.random.default_rng(0))
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def clearly_better(better: Sequence[float], other: Sequence[float], badness: Callable[[float], float]) -> bool:
    """Whether ``better`` (values over seeds) beats ``other`` by more than the seed noise:
    the 95% bootstrap interval of ``badness(mean of other) - badness(mean of better)`` is
    above 0. ``badness`` maps a mean to a number where lower is better."""
    import numpy as np

    if len(better) < 2 or len(other) < 2:
        return False
    rng = np.random.default_rng(0)
    scores = np.vectorize(badness)
    gaps = scores(_resampled_means(other, rng)) - scores(_resampled_means(better, rng))
    return bool(np.quantile(gaps, (1 - LEVEL) / 2) > 0)
