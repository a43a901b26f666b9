"""Pivot tables as text: Markdown, LaTeX (booktabs), CSV and HTML fragments.

A cell prints as ``mean ± std (n=k)``: the mean and sample standard deviation over its ``k``
done runs (seeds); the best of each column in bold. A cell with no done run prints what its runs
became (``diverged``, ``failed``, ``diverged 1, failed 1``); one with some reads, for example,
``0.31 ± 0.02 (n=2; 1 diverged)``: the diverged run is counted, never averaged in. Steps and time
to target print ``not reached`` when no done run reached it, and ``(n=1 of 2 reached)`` when some
did. The first/last-layer gradient ratio prints its geometric mean and the spread of its log10
(``1.2e-03 ×/÷ 10^0.3``). In tuned mode each cell carries the learning rate that was chosen.

The CSV is long-format and unrounded (one row per cell), for numbers to be checked or re-plotted.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Sequence
from typing import Any

from gradbench.report.flat import bytes_text
from gradbench.report.pivot import CellStats, Pivot, PivotReport
from gradbench.report.seed_noise import RULE

__all__ = ["TABLE_FORMATS", "render_pivots", "markdown", "latex", "csv_text", "html_tables", "cell_text", "latex_escape"]

TABLE_FORMATS = ("md", "latex", "csv", "html")
# The unit of the CSV's numbers, by metric kind (accuracy in percent everywhere).
_UNITS = {"percent": "%", "milliseconds": "s", "geometric": "ratio (geometric)", "steps_to_target": "steps", "time_to_target": "s"}

# < > | print as other glyphs in the default OT1 font encoding (">=" reads as "¿="), so they
# are escaped too, and >= <= become the math symbols.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", ">=": r"$\geq$", "<=": r"$\leq$",
}
_LATEX_SPECIAL = re.compile(">=|<=|[" + re.escape("".join(k for k in _LATEX_SPECIALS if len(k) == 1)) + "]")


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (one pass, so escapes are not escaped)."""
    return _LATEX_SPECIAL.sub(lambda match: _LATEX_SPECIALS[match.group()], text)


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


# Markers for plus-minus and the ratio's spread, replaced per format after LaTeX escaping.
_PM, _TIMES, _END = "\ue000", "\ue001", "\ue002"
_MARKUP = {
    False: {_PM: " ± ", _TIMES: " ×/÷ 10^", _END: ""},
    True: {_PM: " $\\pm$ ", _TIMES: " $\\times/\\div$ $10^{", _END: "}$"},
}


def _value_text(pivot: Pivot, cell: CellStats) -> str:
    """The mean and spread of a cell with values (with the markers above), then its 95%
    interval where there are two seeds or more."""
    assert cell.mean is not None and cell.std is not None
    kind, many = pivot.metric.kind, cell.n > 1
    if kind == "percent":
        show = lambda v: f"{100 * v:.1f}"  # noqa: E731
        text = show(cell.mean) + (f"{_PM}{100 * cell.std:.1f}" if many else "")
    elif kind == "milliseconds":
        show = lambda v: _number(1000 * v)  # noqa: E731
        text = show(cell.mean) + (f"{_PM}{_number(1000 * cell.std, 2)}" if many else "")
    elif kind == "geometric":
        show = lambda v: f"{v:.1e}"  # noqa: E731
        text = show(cell.mean) + (f"{_TIMES}{cell.std:.1f}{_END}" if many else "")
    elif kind == "bytes":
        show = bytes_text
        text = show(cell.mean) + (f"{_PM}{bytes_text(cell.std)}" if many and cell.std else "")
    elif pivot.metric.name == "steps_to_target":
        show = lambda v: f"{v:.0f}"  # noqa: E731
        text = show(cell.mean) + (f"{_PM}{cell.std:.0f}" if many else "")
    else:
        show = _number
        text = show(cell.mean) + (f"{_PM}{_number(cell.std, 2)}" if many else "")
    if cell.interval is not None:
        text += f" [{show(cell.interval[0])}, {show(cell.interval[1])}]"
    return text


def _raw_cell_text(pivot: Pivot, cell: CellStats) -> str:
    lr = f"lr={cell.lr:g}" if cell.lr is not None else None
    if pivot.metric.kind == "verdict":
        text = "failed" if cell.failed == cell.runs else (cell.verdict or "-")
        return text + (f" ({lr})" if lr else "")
    lost = [(count, status) for count, status in ((cell.diverged, "diverged"), (cell.failed, "failed")) if count]
    if cell.done == 0:
        text = lost[0][1] if len(lost) == 1 else ", ".join(f"{status} {count}" for count, status in lost)
        return text + (f" ({lr})" if lr else "")
    notes = [f"{count} {status}" for count, status in lost] + ([lr] if lr else [])
    if cell.mean is None:
        text = "not reached" if pivot.metric.kind == "reached" else "-"
        return text + (f" ({'; '.join(notes)})" if notes else "")
    count_text = f"n={cell.n}"
    if pivot.metric.kind == "reached" and cell.n < cell.done:
        count_text += f" of {cell.done} reached"
    return f"{_value_text(pivot, cell)} ({'; '.join([count_text, *notes])})"


def cell_text(pivot: Pivot, cell: CellStats | None, *, for_latex: bool = False) -> str:
    """The text of one cell; ``for_latex``: escaped, with ``$\\pm$``."""
    if cell is None:
        return ""
    text = _raw_cell_text(pivot, cell)
    if for_latex:
        text = latex_escape(text)
    for marker, replacement in _MARKUP[for_latex].items():
        text = text.replace(marker, replacement)
    return text


def _label(values: Sequence[Any]) -> str:
    return ", ".join("-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)) for v in values)


def _caption(report: PivotReport, pivot: Pivot) -> str:
    better = {"lower": "lower is better", "higher": "higher is better", "one": "closest to 1 is best"}.get(pivot.metric.better or "")
    if pivot.metric.kind == "geometric":
        spread = "geometric mean ×/÷ 10^(std of log10) over seeds, [95% bootstrap interval of the geometric mean]"
    else:
        spread = "mean ± std over seeds, [95% bootstrap interval of the mean]"
    parts = [f"{pivot.metric.title}: {spread} (n = runs averaged)"]
    if better:
        parts.append(f"{better}; {RULE}")
    if pivot.several_lrs:
        parts.append("every learning rate run is a row (--tuned keeps each optimizer's best, chosen on validation)")
    if report.note:
        parts.append(report.note)
    return "; ".join(parts)


def _constants_text(report: PivotReport) -> str:
    return "; ".join(f"{k} {_label([v])}" for k, v in report.constants.items())


def markdown(report: PivotReport) -> str:
    """Markdown: one table per pivot, each under a heading naming its task and split."""
    lines = []
    if report.constants:
        lines += [f"All runs: {_constants_text(report)}.", ""]
    for pivot in report.pivots:
        lines += [f"### {pivot.title}", "", _caption(report, pivot) + ".", ""]
        corner = f"{', '.join(pivot.row_axes)} \\ {', '.join(pivot.column_axes)}"
        # A | in a header would split the column, as in a row label.
        lines.append("| " + " | ".join([corner, *(_label(c).replace("|", "\\|") for c in pivot.columns)]) + " |")
        lines.append("|---|" + "|".join("---:" for _ in pivot.columns) + "|")
        for row in pivot.rows:
            cells = []
            for column in pivot.columns:
                cell = pivot.cells.get((row, column))
                text = cell_text(pivot, cell).replace("|", "\\|")
                cells.append(f"**{text}**" if cell is not None and cell.best else text)
            lines.append("| " + " | ".join([pivot.row_label(row).replace("|", "\\|"), *cells]) + " |")
        if pivot.target:
            lines += ["", f"Target: {pivot.target}."]
        lines.append("")
    return "\n".join(lines)


def latex(report: PivotReport) -> str:
    """LaTeX: one ``table`` per pivot with a booktabs ``tabular``, ready to paste (needs
    ``\\usepackage{booktabs}``)."""
    lines = ["% gradbench report; needs \\usepackage{booktabs}"]
    if report.constants:
        lines.append("% all runs: " + latex_escape(_constants_text(report)).replace("\n", " "))
    for pivot in report.pivots:
        corner = latex_escape(f"{', '.join(pivot.row_axes)} \\ {', '.join(pivot.column_axes)}")
        caption = latex_escape(_caption(report, pivot)).replace("±", "$\\pm$")
        lines += [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{latex_escape(pivot.title)}: {caption}.}}",
            "\\begin{tabular}{l" + "r" * len(pivot.columns) + "}",
            "\\toprule",
            " & ".join([corner, *(latex_escape(_label(c)) for c in pivot.columns)]) + " \\\\",
            "\\midrule",
        ]
        for row in pivot.rows:
            cells = []
            for column in pivot.columns:
                cell = pivot.cells.get((row, column))
                text = cell_text(pivot, cell, for_latex=True)
                cells.append(f"\\textbf{{{text}}}" if cell is not None and cell.best else text)
            lines.append(" & ".join([latex_escape(pivot.row_label(row)), *cells]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if pivot.target:
            lines.append(f"\\par\\smallskip{{\\footnotesize Target: {latex_escape(pivot.target)}.}}")
        lines += ["\\end{table}", ""]
    return "\n".join(lines)


def csv_text(report: PivotReport) -> str:
    """Long-format CSV, one row per cell, unrounded: task, the split axes, the row and column
    axes, then the metric's statistics in its ``unit`` (accuracy in percent, as every output
    prints it; the first/last gradient ratio: geometric mean, std of log10), the 95% bootstrap
    interval (``ci_low``, ``ci_high``; empty below two seeds) and the bold flag."""
    split_axes = list(dict.fromkeys(k for p in report.pivots for k in p.split))
    axes = list(dict.fromkeys(a for p in report.pivots for a in (*p.row_axes, *p.column_axes)))
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    header = ["task", *split_axes, *axes, "metric", "unit", "mean", "std", "ci_low", "ci_high", "n", "runs", "done", "diverged", "failed", "best"]
    writer.writerow([*header, "tuned_lr", "verdict", "keys"])
    for pivot in report.pivots:
        scale = 100.0 if pivot.metric.kind == "percent" else 1.0
        unit = _UNITS.get(pivot.metric.name, _UNITS.get(pivot.metric.kind, ""))
        for row in pivot.rows:
            for column in pivot.columns:
                cell = pivot.cells.get((row, column))
                if cell is None:
                    continue
                place = dict(zip(pivot.row_axes, row)) | dict(zip(pivot.column_axes, column))
                low, high = cell.interval or (None, None)
                std = cell.std if pivot.metric.kind == "geometric" or cell.std is None else scale * cell.std
                values: list[Any] = [pivot.task, *(pivot.split.get(k) for k in split_axes), *(place.get(a) for a in axes)]
                values += [pivot.metric.name, unit, *(None if v is None else scale * v for v in (cell.mean,)), std]
                values += [None if v is None else scale * v for v in (low, high)]
                values += [cell.n, cell.runs, cell.done, cell.diverged, cell.failed]
                values += [int(cell.best), cell.lr, cell.verdict, " ".join(cell.keys)]
                writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in values])
    return output.getvalue()


def html_tables(report: PivotReport) -> str:
    """HTML fragments: a ``<table>`` per pivot with its caption (for the HTML report)."""
    parts = []
    if report.constants:
        parts.append(f"<p class=constants>All runs: {html.escape(_constants_text(report))}.</p>")
    for pivot in report.pivots:
        parts.append("<table>")
        caption = f"<b>{html.escape(pivot.title)}</b>: {html.escape(_caption(report, pivot))}."
        if pivot.target:
            caption += f" Target: {html.escape(pivot.target)}."
        parts.append(f"<caption>{caption}</caption>")
        corner = html.escape(f"{', '.join(pivot.row_axes)} \\ {', '.join(pivot.column_axes)}")
        parts.append("<thead><tr><th>" + corner + "</th>" + "".join(f"<th>{html.escape(_label(c))}</th>" for c in pivot.columns) + "</tr></thead>")
        for row in pivot.rows:
            cells = []
            for column in pivot.columns:
                cell = pivot.cells.get((row, column))
                text = html.escape(cell_text(pivot, cell))
                cells.append(f"<td><b>{text}</b></td>" if cell is not None and cell.best else f"<td>{text}</td>")
            parts.append(f"<tr><th>{html.escape(pivot.row_label(row))}</th>{''.join(cells)}</tr>")
        parts.append("</table>")
    return "\n".join(parts) + "\n"


def render_pivots(report: PivotReport, fmt: str) -> str:
    """``report`` in ``fmt`` (``md``, ``latex``, ``csv``; ``html``: fragments, see ``html_report``).

    Raises:
        ValueError: for an unknown format.
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose from: {', '.join(TABLE_FORMATS)}")
    return {"md": markdown, "latex": latex, "csv": csv_text, "html": html_tables}[fmt](report)
