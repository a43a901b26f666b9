"""Figures from the store: training curves, a per-layer gradient heatmap, gradient norm against
depth, the clip-firing rate, performance profiles.

Each function reads the store (never writes it) and returns a ``matplotlib.figure.Figure``
made without pyplot, so no global backend or state changes in the caller's process; PNG, PDF
and SVG are written by matplotlib's Agg-based canvases. ``save_figure`` writes through a
temporary file, so a figure file is complete or absent.

Lines aggregate the runs that differ only in their seed: the line is the mean (for gradient
norms, the geometric mean) over seeds and the band spans the lowest to the highest seed. Runs
that differ in any other axis are never merged into one line: lines are named by every axis
that varies among the selected runs, or by ``by`` when it names all of them (otherwise an
error names the axis left out).
"""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from gradbench.report.files import write_atomically
from gradbench.grid.labels import label_of
from gradbench.monitor.diagnosis import layer_text
from gradbench.report.pivot import knobs_of, run_axes, task_label
from gradbench.report.profiles import PROFILE_MEASURES, Profiles
from gradbench.store.database import Store

__all__ = ["PLOTS", "CURVE_VALUES", "X_AXES", "LineStyles", "groups_of", "smoothing_window", "training_curves", "grad_heatmap", "depth_profile", "clip_rate", "profile_plot", "save_figure", "figure_bytes"]

PLOTS = ("curves", "heatmap", "depth", "clip", "profile")
# --y name -> (where it is read, column, axis label)
CURVE_VALUES = {
    "train_loss": ("evaluations", "train_loss", "training loss"),
    "test_loss": ("evaluations", "test_loss", "test loss"),
    "test_accuracy": ("evaluations", "test_accuracy", "test accuracy (%)"),
    "validation_loss": ("evaluations", "validation_loss", "validation loss"),
    "validation_accuracy": ("evaluations", "validation_accuracy", "validation accuracy (%)"),
    "loss": ("steps", "loss", "mini-batch loss (every step)"),
    "lr": ("evaluations", "lr", "learning rate (at each evaluation)"),
}


def _value_text(value: Any) -> str:
    return "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


Group = tuple[str, str, list[Mapping[str, Any]], dict[str, Any]]


def _groups(runs: Sequence[Mapping[str, Any]], by: Sequence[str] | None) -> list[Group]:
    """(task label, line label, runs, the line's values of the naming axes) for every
    configuration, seeds together. Lines are named by the axes that vary among the runs of
    their task (task knobs are in the task label), as tables name rows (``grid.labels``).

    Raises:
        ValueError: when ``by`` leaves out an axis that varies (lines would merge configurations).
    """
    tasks: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = {}
    knob_names: set[str] = set()
    for run in runs:
        config = json.loads(run["config"])
        knobs = knobs_of(config)
        knob_names.update(knobs)
        tasks.setdefault(task_label(config["task"], knobs), []).append((run, run_axes(run)))
    names = list(dict.fromkeys(n for members in tasks.values() for _, a in members for n in a))
    if by is not None:
        for name in by:
            if name not in names:
                raise ValueError(f"unknown --by axis {name!r}; choose from: {', '.join(names)}")
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    shown_values: dict[tuple[str, str], dict[str, Any]] = {}
    for task, members in tasks.items():
        varying = [n for n in names if n not in knob_names and len({json.dumps(a.get(n), default=str) for _, a in members}) > 1]
        if by is not None:
            left = [n for n in varying if n not in by]
            if left:
                values = sorted({_value_text(a.get(left[0])) for _, a in members})
                raise ValueError(
                    f"the selected runs of {task} also differ in {left[0]!r} ({', '.join(values)}): add it to --by or select one with --where {left[0]}=VALUE"
                )
        shown = list(by) if by is not None else varying
        for run, axes in members:
            label = label_of(axes, shown) or "all runs"
            groups.setdefault((task, label), []).append(run)
            shown_values[(task, label)] = {n: axes.get(n) for n in shown}
    return [(task, label, members, shown_values[(task, label)]) for (task, label), members in groups.items()]


def groups_of(runs: Sequence[Mapping[str, Any]]) -> list[Group]:
    """The lines the figures draw for ``runs`` (to build one ``LineStyles`` for all of them)."""
    return _groups(runs, None)


def _by_task(groups: list[Group]) -> dict[str, list[tuple[str, list[Mapping[str, Any]], dict[str, Any]]]]:
    tasks: dict[str, list[tuple[str, list[Mapping[str, Any]], dict[str, Any]]]] = {}
    for task, label, members, values in groups:
        tasks.setdefault(task, []).append((label, members, values))
    return tasks


def _aggregate(series: Sequence[Mapping[int, float | None]], geometric: bool = False) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, low, high over seeds at each step any seed has (non-finite values skipped)."""
    steps = sorted({s for one in series for s in one})
    kept, means, lows, highs = [], [], [], []
    for step in steps:
        found = (one.get(step) for one in series)
        values = [value for value in found if value is not None and math.isfinite(value)]
        if geometric:
            values = [v for v in values if v > 0]
        if not values:
            continue
        mean = 10 ** statistics.fmean(math.log10(v) for v in values) if geometric else statistics.fmean(values)
        kept.append(step)
        means.append(mean)
        lows.append(min(values))
        highs.append(max(values))
    return kept, means, lows, highs


# Colour encodes the first naming axis, line style (then marker) the others, as seaborn's hue
# and style do; 10 colours, then 20, then evenly spaced hues, so colours never repeat.
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = (None, "o", "s", "^", "v", "D", "x", "+")


def _palette(count: int) -> list[Any]:
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(10)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(20)]
    return [colormaps["hsv"](i / count) for i in range(count)]


class LineStyles:
    """The colour and line style of each configuration, the same in every figure drawn with one
    ``LineStyles`` (the HTML report draws all its figures with one): colour from the value of
    the first axis that names lines, line style (then marker) from the values of the others.
    Called with a run's axes (``run_axes``)."""

    def __init__(self, groups: Sequence[Group]) -> None:
        names = list(dict.fromkeys(n for _, _, _, values in groups for n in values))
        # An axis that the colour's axis decides (each optimizer at its own learning rate) adds
        # no style: the colour already tells its lines apart.
        decided = {
            name
            for name in names[1:]
            if all(len({json.dumps(v.get(name), default=str) for v in group}) == 1 for group in self._by_colour(groups, names[:1]).values())
        }
        self._colour_axis, self._style_axes = names[:1], [n for n in names[1:] if n not in decided]
        self._colours: dict[str, int] = {}
        self._styles: dict[str, int] = {}
        for _, _, members, _ in groups:
            for run in members:
                colour, style = self._keys(run_axes(run))
                self._colours.setdefault(colour, len(self._colours))
                self._styles.setdefault(style, len(self._styles))
        self._palette = _palette(len(self._colours))

    @staticmethod
    def _by_colour(groups: Sequence[Group], colour_axis: Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
        found: dict[str, list[Mapping[str, Any]]] = {}
        for _, _, _, values in groups:
            found.setdefault(json.dumps([values.get(n) for n in colour_axis], default=str), []).append(values)
        return found

    def _keys(self, axes: Mapping[str, Any]) -> tuple[str, str]:
        return tuple(json.dumps([axes.get(n) for n in names], default=str) for names in (self._colour_axis, self._style_axes))  # type: ignore[return-value]

    def __call__(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """The ``plot`` keywords of the line of ``run`` (a stored run row)."""
        colour_key, style_key = self._keys(run_axes(run))
        colour = self._colours.setdefault(colour_key, len(self._colours))
        style = self._styles.setdefault(style_key, len(self._styles))
        marker = _MARKERS[(style // len(_LINESTYLES)) % len(_MARKERS)]
        return {"color": self._palette[colour % len(self._palette)], "linestyle": _LINESTYLES[style % len(_LINESTYLES)], "marker": marker, "markevery": 0.1, "markersize": 4}


def _legend(axes: Any, *, beside_figure: bool = False) -> None:
    """The legend outside the plot, on the right, so it never covers data; the figure grows
    with it (``layout="constrained"``, ``_figure``)."""
    handles, labels = axes.get_legend_handles_labels()
    if not handles:
        return
    labels = [textwrap.fill(label, _WRAP) for label in labels]
    size = "small" if len(handles) <= 10 else "x-small"
    if beside_figure:
        axes.figure.legend(handles, labels, fontsize=size, loc="outside right upper")
    else:
        axes.legend(handles, labels, fontsize=size, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


_WRAP = 45  # legend entries wrap at this many characters


def _panel_height(labels: Sequence[str] | int) -> float:
    """Tall enough for a legend of ``labels`` beside the panel, each wrapped as ``_legend``
    wraps it (a count: entries of one line)."""
    entries = [""] * labels if isinstance(labels, int) else list(labels)
    lines = sum(max(1, len(textwrap.wrap(label, _WRAP))) for label in entries)
    return max(3.6, 0.19 * lines + 0.12 * len(entries) + 0.8)


def _figure(panels: int, width: float = 6.0, height: float = 3.6, legend: Sequence[str] = ()) -> tuple[Figure, list[Any]]:
    """A column of ``panels``, wide enough for the plot and a legend of ``legend`` beside it."""
    longest = min(max((len(label) for label in legend), default=0), _WRAP)
    figure = Figure(figsize=(width + (0.075 * longest + 0.8 if legend else 0.0), height * panels), layout="constrained")
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    return figure, list(axes)


def _smoothed(values: Sequence[float], window: int) -> list[float]:
    """A trailing moving average over ``window`` points (the first points over fewer)."""
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def smoothing_window(points: int) -> int:
    """A window that smooths short runs too: a tenth of the points, at least 3 (no more than
    there are)."""
    return max(1, min(points, max(3, points // 10)))


X_AXES = ("step", "time")


def training_curves(
    store: Store,
    runs: Sequence[Mapping[str, Any]],
    y: str = "train_loss",
    by: Sequence[str] | None = None,
    x: str = "step",
    styles: LineStyles | None = None,
) -> Figure:
    """One panel per task; per configuration, ``y`` against the step (``x="time"``: against
    the seconds of training steps, mean over seeds): mean over seeds, band from the lowest to
    the highest seed; the every-step loss is smoothed (``smoothing_window``). A run that
    diverged ends where it diverged; from there the line is faded (a mean over the seeds left)
    and its legend names the step and how many seeds are left. ``styles``: the colours and line
    styles to share with other figures (default: this figure's own).

    Raises:
        ValueError: for an unknown ``y`` or ``x``, or nothing to draw.
    """
    if y not in CURVE_VALUES:
        raise ValueError(f"unknown --y {y!r}; choose from: {', '.join(CURVE_VALUES)}")
    if x not in X_AXES:
        raise ValueError(f"unknown --x {x!r}; choose from: {', '.join(X_AXES)}")
    source, column, measure = CURVE_VALUES[y]
    groups = _groups(runs, by)
    styles = styles or LineStyles(groups)
    tasks = _by_task(groups)
    legend = [label for _, label, _, _ in groups]
    # Legend entries carry "(n=2)" and maybe a note on faded seeds: allow for both.
    height = max(_panel_height([f"{label} (n=10; faded after step 1000: n=1)" for label, _, _ in lines]) for lines in tasks.values())
    figure, panels = _figure(len(tasks), height=height, legend=legend)
    drawn = 0
    for axes, (task, lines) in zip(panels, tasks.items()):
        positive = True
        for name, members, values in lines:
            series, times = [], []
            for run in members:
                rows = store.evaluations(run["key"]) if source == "evaluations" else store.curve(run["key"])
                scale = 100.0 if "accuracy" in y else 1.0  # accuracy in percent, as the tables print it
                series.append({row["step"]: scale * row[column] for row in rows if row.get(column) is not None})
                if source == "evaluations":
                    times.append({row["step"]: row["train_time_s"] for row in rows})
                else:  # the seconds of the steps so far
                    total, elapsed = 0.0, {}
                    for row in rows:
                        total += row.get("step_time_s") or 0.0
                        elapsed[row["step"]] = total
                    times.append(elapsed)
            steps, means, lows, highs = _aggregate(series)
            if not steps:
                continue
            if y == "loss":  # every step's mini-batch loss: too noisy to read unsmoothed
                window = smoothing_window(len(steps))
                means, lows, highs = _smoothed(means, window), _smoothed(lows, window), _smoothed(highs, window)
            where: list[float] = list(steps)
            if x == "time":
                where = [statistics.fmean([one[s] for one in times if s in one] or [math.nan]) for s in steps]
            drawn += 1
            positive = positive and min(lows) > 0
            # Where a seed stops (diverged, failed), the mean is over fewer seeds and may jump:
            # the line fades there and the legend says from which step.
            counts = [sum(step in one and one[step] is not None and math.isfinite(one[step]) for one in series) for step in steps]
            full = next((i for i, count in enumerate(counts) if count < len(members)), len(steps))
            label = f"{name} (n={len(members)})"
            if 0 < full < len(steps):
                label = f"{name} (n={len(members)}; faded after step {steps[full - 1]}: n={min(counts[full:])})"
            elif full == 0 and len(members) > 1:
                label = f"{name} (n={len(members)}; faded: n={max(counts)} at most)"
            style = styles(members[0])
            (line,) = axes.plot(where[: max(full, 1)], means[: max(full, 1)], label=label, **style)
            if full < len(steps):
                axes.plot(where[max(full - 1, 0) :], means[max(full - 1, 0) :], **{**style, "alpha": 0.35})
            if len(members) > 1:
                axes.fill_between(where, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
        if positive and "loss" in y:
            axes.set_yscale("log")
            axes.yaxis.set_major_formatter(ScalarFormatter())
            axes.yaxis.set_minor_formatter(ScalarFormatter())
        axes.set_title(task)
        axes.set_xlabel("step" if x == "step" else "training time (s, the steps only)")
        axes.set_ylabel(measure)  # the measure, not a line's label
        _legend(axes)
    if not drawn:
        raise ValueError(f"the selected runs have no {measure} recorded" + (" (runs made without --validation have no validation split)" if "validation" in y else ""))
    return figure


def grad_heatmap(store: Store, key: str) -> Figure:
    """Per-layer gradient norm (before clipping) of one run: layer (input at the bottom) x
    recorded step, log colour scale; white where not finite or zero.

    Raises:
        ValueError: if the run recorded no per-layer gradient norms.
    """
    (run,) = store.runs([key])
    names, steps, norms = store.layer_grad_matrix(key)
    if not steps:
        raise ValueError(f"run {key} recorded no per-layer gradient norms (record_every = 0, or it failed before its first step)")
    values = [[v for v in row if v is not None and math.isfinite(v) and v > 0] for row in norms]
    flat = [v for row in values for v in row]
    if not flat:
        raise ValueError(f"run {key} has no finite positive gradient norm to draw")
    matrix = [[(v if v is not None and math.isfinite(v) and v > 0 else math.nan) for v in column] for column in zip(*norms)]
    # Cell edges: half-way between recorded steps, so uneven records (the last step) stay honest.
    edges = [steps[0] - 0.5] + [(a + b) / 2 for a, b in zip(steps, steps[1:])] + [steps[-1] + 0.5]
    figure = Figure(figsize=(7.5, max(2.5, 0.3 * len(names) + 1.5)), layout="constrained")
    axes = figure.subplots()
    low, high = min(flat), max(flat)
    mesh = axes.pcolormesh(edges, range(len(names) + 1), matrix, norm=LogNorm(vmin=low, vmax=high if high > low else low * 10), cmap="viridis")
    figure.colorbar(mesh, ax=axes, label="gradient norm (L2, before clipping)")
    # Named as diagnose and the depth profile name them: layer 0 is the input side.
    axes.set_yticks([i + 0.5 for i in range(len(names))], [layer_text(i, n) for i, n in enumerate(names)] if len(names) <= 40 else [str(i) for i in range(len(names))], fontsize="small")
    axes.set_xlabel("step")
    axes.set_ylabel("layer (input at the bottom)")
    status = "" if run["status"] == "done" else f" [{run['status']}]"
    title = textwrap.fill(f"{run['label']}{status}", 80)
    axes.set_title(f"{title}\nrun {key}", fontsize="medium")
    return figure


def depth_profile(store: Store, runs: Sequence[Mapping[str, Any]], by: Sequence[str] | None = None, styles: LineStyles | None = None) -> Figure:
    """Gradient norm against layer depth at the first and the last recorded step, one line per
    configuration (per activation or init, say): geometric mean over seeds, band from the lowest
    to the highest seed. Vanishing gradients show as lines that fall towards the input.

    Raises:
        ValueError: if no selected run recorded per-layer gradient norms.
    """
    groups = _groups(runs, by)
    styles = styles or LineStyles(groups)
    several = len({t for t, _, _, _ in groups}) > 1
    names = [f"{t}: {label} (n=10)" if several else f"{label} (n=10)" for t, label, _, _ in groups]
    figure, (start, end) = _figure(2, height=_panel_height(names) / 2 + 1.8, legend=names)
    drawn = 0
    steps_seen: tuple[list[int], list[int]] = ([], [])
    layer_names: dict[int, set[str]] = {}
    for task, label, members, values in groups:
        firsts, lasts = [], []
        for run in members:
            names, steps, norms = store.layer_grad_matrix(run["key"])
            for index, layer in enumerate(names):
                layer_names.setdefault(index, set()).add(layer)
            if steps:
                firsts.append(dict(enumerate(norms[0])))
                lasts.append(dict(enumerate(norms[-1])))
                steps_seen[0].append(steps[0])
                steps_seen[1].append(steps[-1])
        if not firsts:
            continue
        drawn += 1
        name = f"{task}: {label}" if several else label
        style = styles(members[0])
        style = {**style, "marker": style["marker"] or "o", "markersize": 3, "markevery": 1}  # every layer a point
        for axes, series in ((start, firsts), (end, lasts)):
            depth, means, lows, highs = _aggregate(series, geometric=True)
            if not depth:
                continue
            axes.plot(depth, means, label=f"{name} (n={len(members)})", **style)
            if len(series) > 1:
                axes.fill_between(depth, lows, highs, color=style["color"], alpha=0.15, linewidth=0)
    if not drawn:
        raise ValueError("the selected runs recorded no per-layer gradient norms (record_every = 0)")
    for axes, when, seen in ((start, "start of training", steps_seen[0]), (end, "end of training", steps_seen[1])):
        where = f"step {min(seen)}" if min(seen) == max(seen) else f"steps {min(seen)}-{max(seen)}"
        axes.set_yscale("log")
        axes.set_title(f"{when} ({where})")
        axes.set_xlabel("layer (0 = input side)")
        if len(layer_names) <= 12 and all(len(found) == 1 for found in layer_names.values()):
            # Named as the heatmap and diagnose name them (one model: one name per index).
            axes.set_xticks(sorted(layer_names), [layer_text(i, next(iter(layer_names[i]))) for i in sorted(layer_names)], rotation=30, ha="right", fontsize="small")
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("gradient norm (L2)")
    _legend(start, beside_figure=True)  # the same lines in both panels
    return figure


def clip_rate(
    store: Store, runs: Sequence[Mapping[str, Any]], by: Sequence[str] | None = None, window: int | None = None, styles: LineStyles | None = None
) -> Figure:
    """How often clipping fired, over training: per configuration, the fraction of recorded steps
    (and of seeds) at which it fired, averaged over a moving window of ``window`` records
    (default: ``smoothing_window``, a tenth of them and at least 3).

    Raises:
        ValueError: if no selected run clips, or none recorded when its clipping fired.
    """
    clipped = [run for run in runs if run["clip"] != "none"]
    if not clipped:
        raise ValueError("no selected run clips its gradients (all have clip none); select some with --where clip=norm:1")
    groups = _groups(clipped, by)
    styles = styles or LineStyles(groups)
    figure, (axes,) = _figure(1, height=_panel_height([f"{label} (n=10)" for _, label, _, _ in groups]), legend=[label for _, label, _, _ in groups])
    drawn = 0
    for task, label, members, values in groups:
        fired: dict[int, list[float]] = {}
        for row in store.grad_norm_rows([run["key"] for run in members]):
            if row["clip_fired"] is not None:
                fired.setdefault(row["step"], []).append(float(row["clip_fired"]))
        if not fired:
            continue
        steps = sorted(fired)
        rates = [statistics.fmean(fired[s]) for s in steps]
        width = window or smoothing_window(len(steps))
        axes.plot(steps, _smoothed(rates, width), label=f"{label} (n={len(members)})", drawstyle="steps-post", **styles(members[0]))
        drawn += 1
    if not drawn:
        raise ValueError("the selected runs recorded no clip firing (stored by a gradbench before clip_fired existed)")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("step")
    axes.set_ylabel("fraction of steps clipped")
    axes.set_title("clip firing rate (trailing moving average over recorded steps)")
    _legend(axes)
    return figure


def profile_plot(profiles: Profiles) -> Figure:
    """rho_s(tau) against tau (log2 scale), one step line per solver, with its score.

    Raises:
        ValueError: if no solver reached the target on any problem (every line would lie at 0).
    """
    if not any(math.isfinite(r) for ratios in profiles.ratios.values() for r in ratios):
        raise ValueError(
            f"no solver reached the target on any problem ({len(profiles.problems)} problems, {profiles.measure.replace('_', ' ')}): "
            "nothing to profile; train longer or select runs that reach it with --where"
        )
    figure, (axes,) = _figure(1, height=_panel_height([f"{s} (score 0.00)" for s in profiles.solvers]), legend=[f"{s} (score 0.00)" for s in profiles.solvers])
    top = profiles.tau_max
    for solver in profiles.solvers:
        finite = sorted(r for r in profiles.ratios[solver] if math.isfinite(r) and r <= top)
        taus = [1.0, *finite, top]
        axes.plot(taus, [profiles.rho(solver, t) for t in taus], drawstyle="steps-post", label=f"{solver} (score {profiles.score(solver):.2f})")
    axes.set_xscale("log", base=2)
    axes.set_xlim(1, top)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("tau (factor of the best)")
    axes.set_ylabel(f"fraction of the {len(profiles.problems)} problems")
    unit = PROFILE_MEASURES[profiles.measure][1]
    axes.set_title(f"performance profile: {profiles.measure.replace('_', ' ')} ({unit})")
    _legend(axes)
    return figure


def figure_bytes(figure: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """The figure as a file's bytes (the HTML report embeds PNGs)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


def save_figure(figure: Figure, path: str | Path, dpi: int = 150) -> None:
    """Write ``figure`` to ``path`` (format from the suffix) through a temporary file.

    Raises:
        ValueError: if the file cannot be written.
    """
    path = Path(path)
    write_atomically(path, lambda temporary: figure.savefig(temporary, format=path.suffix.lower().lstrip("."), dpi=dpi))
