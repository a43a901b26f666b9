"""The one-page HTML report: every table and figure of a store in one self-contained file.

Figures are embedded as base64 PNGs and the style sheet is inline, so the page opens in a
browser with no network and can be mailed or archived as one file. It holds, for the selected
runs: the flat comparison table; a pivot table per metric that the runs have (or the one
``metric`` asked for); the performance-profile tables and plots where the tasks have targets;
training curves, gradient norm against depth, the clip-firing rate where runs clip, and a
per-layer gradient heatmap of the first run of each task. A figure with nothing to draw is left
out with a line saying why.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from gradbench.report.flat import build_table, cell_texts, constants_text
from gradbench.report.pivot import METRICS, build_pivots
from gradbench.report.plots import clip_rate, depth_profile, figure_bytes, grad_heatmap, profile_plot, training_curves
from gradbench.report.profiles import PROFILE_MEASURES, TAUS, Profiles, performance_profiles
from gradbench.report.tables import html_tables
from gradbench.store.database import Store

__all__ = ["html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; font-size: 0.9em; display: block; overflow-x: auto; }  /* a wide table scrolls inside the page */
caption { text-align: left; padding-bottom: 0.4em; }
th, td { border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; }
td { text-align: right; }
th { text-align: left; }
img { max-width: 100%; }
.note { color: #666; }
"""


def _metric_has_values(metric: str, runs: Sequence[Mapping[str, Any]]) -> bool:
    chosen = METRICS[metric]
    if chosen.field is None:
        return True
    if chosen.kind == "reached":
        return any(run.get("target") is not None for run in runs)
    return any(run.get(chosen.field) is not None for run in runs)


def _flat_table(runs: Sequence[Mapping[str, Any]], verdicts: Mapping[str, Sequence[str]]) -> str:
    table = build_table(runs, verdicts)
    parts = ["<table>", f"<caption>Every configuration, seeds aggregated (mean ± std of done runs). {html.escape(constants_text(table))}</caption>"]
    parts.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr>")
    for cells in cell_texts(table):
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _profile_table(profiles: Profiles) -> str:
    unit = PROFILE_MEASURES[profiles.measure][1]
    caption = (
        f"Performance profile on {profiles.measure.replace('_', ' ')} ({unit}) over {len(profiles.problems)} problems: the fraction "
        f"solved within tau times the best; score = area under the profile for tau in [1, {profiles.tau_max:g}]."
    )
    parts = ["<table>", f"<caption>{html.escape(caption)}</caption>"]
    parts.append("<tr><th>solver</th>" + "".join(f"<th>tau={t:g}</th>" for t in TAUS) + "<th>score</th></tr>")
    for solver in profiles.solvers:
        cells = "".join(f"<td>{profiles.rho(solver, t):.2f}</td>" for t in TAUS)
        parts.append(f"<tr><th>{html.escape(solver)}</th>{cells}<td>{profiles.score(solver):.3f}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _figure_html(title: str, make: Callable[[], Any]) -> str:
    try:
        figure = make()
    except ValueError as error:  # nothing to draw: say so instead of failing the report
        return f"<h3>{html.escape(title)}</h3>\n<p class=note>Not drawn: {html.escape(str(error))}.</p>"
    encoded = base64.b64encode(figure_bytes(figure)).decode("ascii")
    return f'<h3>{html.escape(title)}</h3>\n<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'


def html_report(
    store: Store,
    runs: Sequence[Mapping[str, Any]],
    *,
    rows: Sequence[str] = ("optimizer",),
    columns: Sequence[str] = ("activation",),
    metric: str | None = None,
    verdicts: Mapping[str, Sequence[str]] | None = None,
    lrs: Mapping[str, float] | None = None,
    note: str | None = None,
) -> str:
    """The page for ``runs`` (already selected, and tuned if ``lrs`` is given).

    Raises:
        ValueError: for an unknown metric or pivot axis.
    """
    verdicts = verdicts or {}
    metrics = [metric] if metric is not None else [m for m in METRICS if _metric_has_values(m, runs)]
    body = [f"<h1>gradbench report</h1>\n<p>{len(runs)} runs from <code>{html.escape(str(store.path))}</code>.</p>"]
    body.append("<h2>Comparison table</h2>")
    body.append(_flat_table(runs, verdicts))
    body.append("<h2>Pivot tables</h2>")
    for name in metrics:
        report = build_pivots(runs, rows, columns, name, verdicts, lrs)
        report.note = note
        body.append(f"<h3>{html.escape(METRICS[name].title)}</h3>")
        body.append(html_tables(report))
    if any(run.get("target") is not None for run in runs):
        body.append("<h2>Performance profiles</h2>")
        for measure in PROFILE_MEASURES:
            profiles = performance_profiles(runs, measure, rows)
            body.append(_profile_table(profiles))
            body.append(_figure_html(f"Performance profile: {measure.replace('_', ' ')}", partial(profile_plot, profiles)))
    body.append("<h2>Figures</h2>")
    body.append(_figure_html("Training loss", lambda: training_curves(store, runs, "train_loss")))
    if any(run.get("final_test_accuracy") is not None for run in runs):
        body.append(_figure_html("Test accuracy", lambda: training_curves(store, runs, "test_accuracy")))
    body.append(_figure_html("Gradient norm against depth", lambda: depth_profile(store, runs)))
    if any(run["clip"] != "none" for run in runs):
        body.append(_figure_html("Clip firing rate", lambda: clip_rate(store, runs)))
    first_of_task: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        if run["status"] != "failed":
            first_of_task.setdefault(json.loads(run["config"])["task"], run)
    for task, run in first_of_task.items():
        body.append(_figure_html(f"Per-layer gradient norms: {task} (run {run['key']})", partial(grad_heatmap, store, run["key"])))
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>gradbench report</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
