"""A reproduction's claims against the stored runs: the outcomes, the exit code, and the table
``gradbench reproduce`` prints (published | measured | band | verdict), in Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gradbench.reproduce.claims import Measured, Outcome, Reproduction, judge
from gradbench.reproduce.evidence import Evidence

__all__ = ["compare", "exit_code", "render", "measured_text"]


def compare(reproduction: Reproduction, evidence: Evidence) -> list[Outcome]:
    """Every claim of ``reproduction`` measured from ``evidence``, in the claims' order."""
    return [judge(claim, evidence) for claim in reproduction.claims]


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """0 when every claim is within its band, 1 when any is outside or missing."""
    return 0 if outcomes and all(outcome.verdict == "within" for outcome in outcomes) else 1


def _number(value: float) -> str:
    """Four significant digits: enough to see which side of a band's end a mean lies (87.45
    against a band from 87.51), and no more than seeds can tell."""
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def measured_text(measured: Measured | None, unit: str = "") -> str:
    """``mean +- std (n=k)``; a nan among the seeds is counted and said."""
    if measured is None:
        return "-"
    suffix = f" {unit}" if unit and unit != "%" else unit
    nans = sum(math.isnan(v) for v in measured.values)
    nan_note = f", {nans} without a value" if nans else ""
    if measured.n == 1:
        return f"{_number(measured.mean)}{suffix} (n=1{nan_note})"
    return f"{_number(measured.mean)} +- {_number(measured.std)}{suffix} (n={measured.n}{nan_note})"


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
            "| " + " | ".join(_cell(text) for text in (claim.statement, claim.published.printed, claim.published.source, measured_text(outcome.measured, unit), band, outcome.verdict)) + " |"
        )
    lines += ["", "Bands:"]
    lines += [f"- {outcome.claim.id}: {outcome.claim.band.why}" for outcome in outcomes]
    missing = [outcome for outcome in outcomes if outcome.verdict == "missing"]
    if missing:
        lines += ["", "Missing:"]
        lines += [f"- {outcome.claim.id}: {outcome.missing}" for outcome in missing]
    within = sum(outcome.verdict == "within" for outcome in outcomes)
    lines += ["", f"{within} of {len(outcomes)} claims within their bands."]
    return "\n".join(lines) + "\n"
