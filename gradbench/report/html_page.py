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

from gradbench.report.flat import TEXT_COLUMNS, build_table, cell_texts, constants_text
from gradbench.report.pivot import METRICS, build_pivots
from gradbench.report.plots import LineStyles, clip_rate, depth_profile, figure_bytes, grad_heatmap, groups_of, profile_plot, training_curves
from gradbench.report.profiles import PROFILE_MEASURES, TAUS, Profiles, performance_profiles
from gradbench.report.tables import html_tables
from gradbench.store.database import Store

__all__ = ["html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 100em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; font-size: 0.9em; display: block; overflow-x: auto; }  /* a wide table scrolls inside the page */
caption { text-align: left; padding-bottom: 0.4em; }
th, td { border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; }
td { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }  /* numbers: right, never wrapped */
th, td.text { text-align: left; }
th { white-space: nowrap; }  /* a row label on one line */
thead th { white-space: normal; vertical-align: bottom; }  /* column names wrap: the table stays narrow */
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: 0.1em 1em; }
dl.provenance dt { font-weight: bold; }
dl.provenance dd { margin: 0; }
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
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr></thead>")
    text_columns = {i for i, c in enumerate(table.columns) if c in TEXT_COLUMNS}
    for cells in cell_texts(table):
        cells = [c.replace(" +- ", " ± ") for c in cells]  # the plain-text tables' ASCII, typeset as the caption has it
        parts.append("<tr>" + "".join(f"<td class=text>{html.escape(c)}</td>" if i in text_columns else f"<td>{html.escape(c)}</td>" for i, c in enumerate(cells)) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


_EINSUM_ORDER = {True: "cheapest (opt_einsum)", False: "left to right (no opt_einsum)"}


def _provenance(store: Store, runs: Sequence[Mapping[str, Any]]) -> str:
    """Where the numbers come from: versions, devices, threads, dates, run counts and the
    commands that made the runs, from the environment each run stored."""
    from gradbench import __version__

    envs = [json.loads(run["env"]) if run.get("env") else {} for run in runs]

    def values(name: str) -> str:
        found = sorted({str(env[name]) for env in envs if env.get(name) is not None})
        return ", ".join(found) or "not stored"

    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
    started = min((run["started_at"] for run in runs), default="-")
    finished = max((run["finished_at"] for run in runs), default="-")
    items = [
        ("store", str(store.path)),
        ("runs", f"{len(runs)}: " + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))),
        ("made", f"{started} to {finished}"),
        ("gradbench", f"{values('gradbench')} (runs); {__version__} (this report)"),
        ("torch", values("torch")),
        ("python", values("python")),
        ("devices", "; ".join(sorted({f"{env.get('device', '?')}: {env.get('device_name', '?')}" for env in envs})) or "not stored"),
        ("torch threads", values("threads")),
        # What moves a CPU step's time besides the code: the C allocator's settings and whether
        # torch.einsum ordered its contractions (gradbench.run.environment).
        ("C allocator", values("malloc")),
        ("einsum order", ", ".join(sorted({_EINSUM_ORDER[env["opt_einsum"]] for env in envs if "opt_einsum" in env})) or "not stored"),
        ("hosts", values("host")),
        ("commands", "; ".join(sorted({env["command"] for env in envs if env.get("command")})) or "not stored"),
    ]
    rows = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in items)
    return f"<dl class=provenance>{rows}</dl>"


def _profile_table(profiles: Profiles) -> str:
    unit = PROFILE_MEASURES[profiles.measure][1]
    caption = (
        f"Performance profile on {profiles.measure.replace('_', ' ')} ({unit}) over {len(profiles.problems)} problems: the fraction "
        f"solved within tau times the best; score = area under the profile for tau in [1, {profiles.tau_max:g}]."
    )
    parts = ["<table>", f"<caption>{html.escape(caption)}</caption>"]
    parts.append("<thead><tr><th>solver</th>" + "".join(f"<th>tau={t:g}</th>" for t in TAUS) + "<th>score</th></tr></thead>")
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
    metrics: Sequence[str] | None = None,
    verdicts: Mapping[str, Sequence[str]] | None = None,
    lrs: Mapping[str, float] | None = None,
    note: str | None = None,
    split: Sequence[str] = (),
) -> str:
    """The page for ``runs`` (already selected, and tuned if ``lrs`` is given): provenance,
    the summary (the flat table), then a pivot per metric where it adds to the summary (more
    than one row or column; a one-row, one-column pivot repeats a cell of the summary), then
    the figures ``gradbench plot`` draws.

    Raises:
        ValueError: for an unknown metric or pivot axis.
    """
    verdicts = verdicts or {}
    metrics = list(metrics) if metrics is not None else [m for m in METRICS if _metric_has_values(m, runs)]
    body = ["<h1>gradbench report</h1>", _provenance(store, runs)]
    body.append("<h2>Summary</h2>")
    body.append(_flat_table(runs, verdicts))
    details = []
    for name in metrics:
        report = build_pivots(runs, rows, columns, name, verdicts, lrs, split)
        report.note = note
        report.pivots = [p for p in report.pivots if len(p.rows) > 1 or len(p.columns) > 1]
        if report.pivots:
            details.append(f"<h3>{html.escape(METRICS[name].title)}</h3>")
            details.append(html_tables(report))
    if details:
        body.append("<h2>Details: one table per task and metric</h2>")
        body += details
    if any(run.get("target") is not None for run in runs):
        body.append("<h2>Performance profiles</h2>")
        for measure in PROFILE_MEASURES:
            profiles = performance_profiles(runs, measure, rows)
            body.append(_profile_table(profiles))
            body.append(_figure_html(f"Performance profile: {measure.replace('_', ' ')}", partial(profile_plot, profiles)))
    body.append("<h2>Figures</h2>")
    # One colour per configuration across every figure of the page.
    styles = LineStyles(groups_of(runs))
    body.append(_figure_html("Training loss", lambda: training_curves(store, runs, "train_loss", styles=styles)))
    if any(run.get("final_test_accuracy") is not None for run in runs):
        body.append(_figure_html("Test accuracy", lambda: training_curves(store, runs, "test_accuracy", styles=styles)))
    body.append(_figure_html("Gradient norm against depth", lambda: depth_profile(store, runs, styles=styles)))
    if any(run["clip"] != "none" for run in runs):
        body.append(_figure_html("Clip firing rate", lambda: clip_rate(store, runs, styles=styles)))
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
