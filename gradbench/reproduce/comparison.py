"""A reproduction's claims against the stored runs: the outcomes, the exit code, and the table
``gradbench reproduce`` prints (published | measured | band | verdict), in Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gradbench.reproduce.claims import Band, Measured, Outcome, Reproduction, judge
from gradbench.reproduce.evidence import Evidence

__all__ = ["compare", "exit_code", "render", "measured_text"]


def compare(reproduction: Reproduction, evidence: Evidence) -> list[Outcome]:
    """Every claim of ``reproduction`` measured from ``evidence``, in the claims' order."""
    return [judge(claim, evidence) for claim in reproduction.claims]


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """0 when every claim is within its band, 1 when any is outside, missing or in error."""
    return 0 if outcomes and all(outcome.verdict == "within" for outcome in outcomes) else 1


def _number(value: float, band: Band | None = None) -> str:
    """Four significant digits, more where a band's end needs them: the printed mean lies on
    the same side of each end as the mean itself (1.0497 against ``>= 1.05`` prints as 1.0497,
    not 1.05), so the table never reads against its verdict."""
    if not math.isfinite(value):
        return str(value)
    ends = [end for end in (band.low, band.high) if end is not None] if band is not None else []
    for digits in range(4, 16):
        text = f"{value:.{digits}g}"
        shown = float(text)
        if all((shown < end) == (value < end) and (shown > end) == (value > end) for end in ends):
            return text
    return repr(value)


def measured_text(measured: Measured | None, unit: str = "", band: Band | None = None) -> str:
    """``mean +- std (n=k)``; seeds without a finite value are counted and said."""
    if measured is None:
        return "-"
    suffix = f" {unit}" if unit and unit != "%" else unit
    note = f", {measured.non_finite} without a finite value" if measured.non_finite else ""
    mean = _number(measured.mean, band)
    if measured.n == 1:
        return f"{mean}{suffix} (n=1{note})"
    return f"{mean} +- {measured.std:.2g}{suffix} (n={measured.n}{note})"  # a spread needs no more digits


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(reproduction: Reproduction, outcomes: Sequence[Outcome], size: str = "default") -> str:
    """The side-by-side table, then each band's reason and what is missing, as Markdown."""
    lines = [
        f"### {reproduction.title}",
        "",
        f"{reproduction.citation}. Size: {size}" + (" (smoke: a few steps and one seed; the verdicts mean nothing at this size)" if size == "smoke" else "") + ".",
        "",
        "| claim | published | source | measured (mean +- std over seeds) | band | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        claim = outcome.claim
        unit = claim.unit
        band = claim.band.text() + (unit if unit == "%" else (f" {unit}" if unit else ""))
        lines.append(
            "| " + " | ".join(_cell(text) for text in (claim.statement, claim.published.printed, claim.published.source, measured_text(outcome.measured, unit, claim.band), band, outcome.verdict)) + " |"
        )
    lines += ["", "Bands:"]
    lines += [f"- {outcome.claim.id}: {outcome.claim.band.why}" for outcome in outcomes]
    for verdict, heading in (("missing", "Missing:"), ("error", "Measures that raised an error (a bug: please report it):")):
        chosen = [outcome for outcome in outcomes if outcome.verdict == verdict]
        if chosen:
            lines += ["", heading]
            lines += [f"- {outcome.claim.id}: {outcome.reason}" for outcome in chosen]
    within = sum(outcome.verdict == "within" for outcome in outcomes)
    lines += ["", f"{within} of {len(outcomes)} claims within their bands."]
    return "\n".join(lines) + "\n"
