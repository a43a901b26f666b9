"""Figures (gradbench plot), the one-page HTML report, and the bad input of both: one line,
exit code 2, nothing written."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
import sqlite3
import subprocess

import pytest
from report_store import copy_store, keys_of, run_cli

import gradbench
from gradbench.report import METRICS, build_pivots
from gradbench.store import Store

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-", ".svg": b"<?xml"}


def first_mlp_key(db) -> str:
    return next(keys_of(db, "task LIKE 'mnist1d_mlp%'"))


@pytest.fixture(scope="module")
def reached_db(report_db, tmp_path_factory):
    """The small store with crafted steps and time to target: adam reaches in 10 steps, sgd in 15."""

    def reach(connection):
        connection.execute(
            "UPDATE runs SET steps_to_target = CASE optimizer WHEN 'adam' THEN 10 ELSE 15 END, "
            "time_to_target_s = CASE optimizer WHEN 'adam' THEN 0.1 ELSE 0.15 END WHERE status = 'done'"
        )

    return copy_store(report_db, tmp_path_factory.mktemp("reached") / "reached.db", reach)


@pytest.mark.parametrize(
    "kind, extra, suffix",
    [
        ("curves", ["--where", "task=mnist1d_mlp", "--where", "optimizer=adam"], ".png"),
        ("curves", ["--y", "test_accuracy", "--where", "task=mnist1d_mlp"], ".pdf"),
        ("curves", ["--y", "loss", "--where", "task=linreg"], ".svg"),
        ("heatmap", [], ".png"),
        ("heatmap", ["--where", "task=linreg", "--where", "optimizer=adam", "--where", "lr=0.1", "--where", "seed=1"], ".svg"),
        ("depth", ["--where", "task=mnist1d_mlp", "--where", "optimizer=sgd", "--where", "lr=0.1", "--where", "clip=none", "--by", "activation"], ".png"),
        ("depth", ["--where", "task=mnist1d_mlp"], ".pdf"),
        ("clip", ["--where", "task=mnist1d_mlp"], ".png"),
        ("profile", [], ".pdf"),
        ("profile", ["--measure", "time_to_target", "--tuned"], ".png"),
    ],
)
def test_each_plot_is_written_as_a_valid_file(report_db, reached_db, tmp_path, kind, extra, suffix):
    if kind == "profile":  # no run of the small store reaches its target in 20 steps
        report_db = reached_db
    output = tmp_path / f"figure{suffix}"
    run = [first_mlp_key(report_db)[:8]] if kind == "heatmap" and not extra else []
    code, _, err = run_cli("plot", kind, *run, "--db", str(report_db), "-o", str(output), *extra)
    assert code == 0, err
    data = output.read_bytes()
    assert len(data) > 1000 and data.startswith(MAGIC[suffix])
    assert [p.name for p in tmp_path.iterdir()] == [output.name]  # no temporary file left


def test_the_heatmap_draws_every_layer_and_record_of_the_run(report_db):
    from gradbench.report.plots import grad_heatmap

    key = first_mlp_key(report_db)
    with Store.open(report_db, readonly=True) as store:
        figure = grad_heatmap(store, key)
    connection = sqlite3.connect(report_db)
    layers = connection.execute("SELECT count(*) FROM layers WHERE run_key = ?", (key,)).fetchone()[0]
    steps = connection.execute("SELECT count(DISTINCT step) FROM layer_grad_norms WHERE run_key = ?", (key,)).fetchone()[0]
    first = connection.execute("SELECT grad_norm FROM layer_grad_norms WHERE run_key = ? ORDER BY step, layer_index LIMIT 1", (key,)).fetchone()[0]
    connection.close()
    mesh = figure.axes[0].collections[0]
    assert mesh.get_array().shape == (layers, steps)
    assert mesh.get_array()[0, 0] == pytest.approx(first)
    assert mesh.norm.__class__.__name__ == "LogNorm"


def test_the_depth_profile_is_the_geometric_mean_over_seeds(report_db):
    from gradbench.report.plots import depth_profile

    with Store.open(report_db, readonly=True) as store:
        runs = [r for r in store.runs() if r["task"].startswith("mnist1d_mlp") and r["optimizer"] == "sgd" and r["lr"] == 0.1 and r["clip"] == "none"]
        figure = depth_profile(store, runs, by=["activation"])
    start = figure.axes[0]
    lines = {line.get_label().split(" (")[0]: line for line in start.get_lines()}
    assert set(lines) == {"activation=sigmoid", "activation=relu"}
    connection = sqlite3.connect(report_db)
    keys = [r["key"] for r in runs if r["activation"] == "sigmoid"]
    norms = [
        connection.execute("SELECT grad_norm FROM layer_grad_norms WHERE run_key = ? AND layer_index = 0 ORDER BY step LIMIT 1", (k,)).fetchone()[0] for k in keys
    ]
    connection.close()
    assert lines["activation=sigmoid"].get_ydata()[0] == pytest.approx((norms[0] * norms[1]) ** 0.5)


def test_the_html_report_is_self_contained_and_holds_every_table(report_db, tmp_path):
    output = tmp_path / "report.html"
    code, out, err = run_cli("report", "--db", str(report_db), "--format", "html", "-o", str(output))
    assert code == 0 and out == "", err
    page = output.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "<script" not in page and "<link" not in page
    with Store.open(report_db, readonly=True) as store:
        runs = store.runs()
    pivot_count = 0
    for name, metric in METRICS.items():
        if metric.field is not None and metric.kind != "reached" and all(r[metric.field] is None for r in runs):
            continue
        report = build_pivots(runs, metric=name)
        pivot_count += len(report.pivots)
        assert f"<h3>{metric.title}</h3>" in page
        for pivot in report.pivots:
            assert pivot.title in page
    # The flat table, every pivot worth a table (more than one cell), and the two performance-profile tables.
    assert page.count("<table>") <= 1 + pivot_count + 2
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 5 and all(base64.b64decode(image).startswith(MAGIC[".png"]) for image in images)


def test_report_writes_its_output_file_atomically(report_db, tmp_path):
    output = tmp_path / "table.tex"
    code, out, _ = run_cli("report", "--db", str(report_db), "--format", "latex", "-o", str(output))
    assert code == 0 and out == "" and output.read_text().startswith("% gradbench report")
    assert [p.name for p in tmp_path.iterdir()] == ["table.tex"]


BAD = [
    (["report", "--metric", "accuracy"], r"unknown --metric 'accuracy'; choose from: train_loss, test_loss"),
    (["report", "--rows", "optimiser"], r"unknown --rows axis 'optimiser'; choose from: optimizer, lr"),
    (["report", "--rows", "optimizer", "--columns", "optimizer"], r"axis 'optimizer' is given twice"),
    (["report", "--tuned", "--rows", "lr"], r"--tuned chooses the learning rate, so lr cannot be"),
    (["report", "--tune-on", "train_loss"], r"--tune-on applies with --tuned"),
    (["report", "--tuned", "--tune-on", "test_accuracy"], r"unknown --tune-on 'test_accuracy'; choose from: validation_loss"),
    (["report", "--profiles", "--format", "latex"], r"--profiles prints as md, csv or html"),
    (["report", "--profiles", "--metric", "test_loss"], r"--profiles takes no --metric \('test_loss'\)"),
    (["report", "--profiles", "--columns", "init"], r"--profiles takes no --columns \('init'\)"),
    (["report", "--profiles", "--format", "html", "-o", "{tmp}/r.html", "--metric", "test_loss"], r"--profiles takes no --metric"),
    (["report", "--profiles", "--rows", "optimiser"], r"unknown --rows axis 'optimiser'; choose from: optimizer, lr"),
    (["report", "--where", "optimizer"], r"invalid --where 'optimizer': expected AXIS=VALUE"),
    (["report", "--where", "colour=red"], r"unknown --where axis 'colour'; choose from: task, seed, status"),
    (["report", "--where", "optimizer=lbfgs", "--rows", "optimizer"], r"no runs in .* match --where"),
    (["report", "--format", "html", "-o", "{db}"], r"is the database itself"),
    (["report", "-o", "{tmp}/missing/report.md"], r"directory .* does not exist"),
    (["plot", "histogram", "-o", "{out}.png"], r"unknown plot 'histogram'; choose from: curves, heatmap, depth, clip, profile"),
    (["plot", "curves", "-o", "{out}.jpg"], r"cannot tell the figure format .* end it in .png, .pdf, .svg"),
    (["plot", "heatmap", "-o", "{out}.png"], r"plot heatmap draws one run: give its key"),
    (["plot", "heatmap", "--where", "optimizer=sgd", "-o", "{out}.png"], r"plot heatmap draws one run, and --where selects \d+: add --where"),
    (["plot", "curves", "abc", "-o", "{out}.png"], r"plot curves takes no run key"),
    (["plot", "heatmap", "abc", "--tuned", "-o", "{out}.png"], r"--tuned applies to plot curves, depth, clip and profile, not heatmap"),
    (["plot", "heatmap", "ffffffffff", "-o", "{out}.png"], r"no run 'ffffffffff' in"),
    (["plot", "curves", "--y", "accuracy", "-o", "{out}.png"], r"unknown --y 'accuracy'; choose from: train_loss"),
    (["plot", "curves", "--measure", "steps_to_target", "-o", "{out}.png"], r"--measure applies to plot profile, not curves"),
    (["plot", "depth", "--by", "activation", "-o", "{out}.png"], r"also differ in 'optimizer' \(adam, sgd\): add it to --by"),
    (["plot", "depth", "--by", "colour", "-o", "{out}.png"], r"unknown --by axis 'colour'"),
    (["plot", "clip", "--where", "clip=none", "-o", "{out}.png"], r"no selected run clips its gradients"),
    (["plot", "profile", "--measure", "loss", "-o", "{out}.png"], r"unknown profile measure 'loss'"),
    (["plot", "curves", "-o", "{db}"], r"cannot tell the figure format"),
    (["plot", "curves", "--y", "validation_loss", "--where", "task=linreg", "--where", "seed=5", "-o", "{out}.png"], r"no runs in .* match --where"),
]


@pytest.mark.parametrize("args, pattern", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(report_db, tmp_path, args, pattern):
    before = report_db.read_bytes()
    args = [a.format(db=report_db, tmp=tmp_path, out=tmp_path / "figure") for a in args]
    code, out, err = run_cli(*args, "--db", str(report_db))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("gradbench: error: "), err
    assert re.search(pattern, err), err
    assert list(tmp_path.iterdir()) == []
    assert report_db.read_bytes() == before


def test_a_profile_no_solver_reached_is_an_error_and_not_drawn_in_the_page(report_db, tmp_path):
    def never(connection):
        connection.execute("UPDATE runs SET steps_to_target = NULL, time_to_target_s = NULL")

    db = copy_store(report_db, tmp_path / "never.db", never)
    figure = tmp_path / "profile.png"
    code, out, err = run_cli("plot", "profile", "--db", str(db), "-o", str(figure))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no solver reached the target on any problem" in err and not figure.exists()
    page = tmp_path / "report.html"
    code, _, err = run_cli("report", "--db", str(db), "--format", "html", "-o", str(page))
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert text.count("Not drawn: no solver reached the target on any problem") == 2  # steps and time
    profiles_section = text[text.index("<h2>Performance profiles</h2>") : text.index("<h2>Figures</h2>")]
    assert "data:image/png" not in profiles_section


def test_curves_fade_where_a_seed_stops_and_the_legend_says_so(report_db, tmp_path):
    from matplotlib.colors import same_color

    from gradbench.report.plots import training_curves

    where = "task = 'linreg' AND optimizer = 'sgd' AND lr = 0.1"
    stopped = sorted(keys_of(report_db, where))[1]

    def diverge(connection):
        connection.execute("DELETE FROM evaluations WHERE run_key = ? AND step > 10", (stopped,))
        connection.execute("UPDATE runs SET status = 'diverged' WHERE key = ?", (stopped,))

    db = copy_store(report_db, tmp_path / "diverged.db", diverge)
    with Store.open(db, readonly=True) as store:
        runs = store.runs(list(keys_of(db, where)))
        assert len(runs) == 2
        figure = training_curves(store, runs, "train_loss")
    axes = figure.axes[0]
    solid, faded = axes.get_lines()
    assert list(solid.get_xdata()) == [0, 5, 10] and solid.get_alpha() is None
    assert list(faded.get_xdata()) == [10, 15, 20] and faded.get_alpha() < 1
    assert same_color(solid.get_color(), faded.get_color()) and solid.get_linestyle() == faded.get_linestyle()
    (text,) = [t.get_text() for t in axes.get_legend().get_texts()]
    assert text.endswith("(n=2; faded after step 10: n=1)")


def test_the_curves_y_axis_names_the_measure_not_a_line(report_db):
    """It was labelled with the last legend entry."""
    from gradbench.report.plots import CURVE_VALUES, training_curves
    from gradbench.store import Store

    with Store.open(report_db, readonly=True) as store:
        runs = store.runs()
        for y in ("train_loss", "lr"):
            figure = training_curves(store, runs, y=y)
            assert {axes.get_ylabel() for axes in figure.axes if axes.get_title()} == {CURVE_VALUES[y][2]}


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_sit_outside_the_plot_and_name_only_what_varies(report_db):
    """Issue 12: a legend of six lines or fewer sat inside the plot, over the data."""
    from gradbench.report.plots import training_curves

    with Store.open(report_db, readonly=True) as store:
        runs = [r for r in store.runs() if r["task"] == "linreg" and r["activation"] is None and r["optimizer"] == "sgd"]
        figure = training_curves(store, runs, "train_loss")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    axes = figure.axes[0]
    legend = axes.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert 1 <= len(labels) <= 6 and all(label.startswith("lr=") for label in labels)  # only lr varies among these runs
    assert not _overlaps(legend.get_window_extent(renderer), axes.get_window_extent(renderer))


def test_colours_never_repeat_and_a_configuration_keeps_its_colour_in_every_figure(report_db):
    """Issue 12: colours repeated after ten lines; colour is one axis, line style another."""
    from matplotlib.colors import to_hex

    from gradbench.report.plots import LineStyles, depth_profile, groups_of, training_curves

    with Store.open(report_db, readonly=True) as store:
        runs = store.runs()
        styles = LineStyles(groups_of(runs))
        curves = training_curves(store, runs, "train_loss", styles=styles)
        depth = depth_profile(store, runs, styles=styles)
    looks: dict[str, tuple] = {}
    for figure in (curves, depth):
        for axes in figure.axes:
            for line in axes.get_lines():
                label = line.get_label().split(" (n=")[0].split(": ")[-1]
                if label.startswith("_"):
                    continue
                look = (to_hex(line.get_color()), line.get_linestyle(), line.get_marker() if figure is curves else None)
                if figure is curves:
                    assert label not in looks or looks[label] == look
                    looks[label] = look
                else:  # the depth profile: the same colour and line style as on the curves
                    assert (to_hex(line.get_color()), line.get_linestyle()) == looks[label][:2], label
    assert len(looks) > 10 and len(set(looks.values())) == len(looks)  # every line its own look
    colours = {look[0] for look in looks.values()}
    assert len(colours) == len({label.split(",")[0] for label in looks})  # one colour per optimizer


def test_curves_against_training_time_and_a_smoothing_window_that_smooths_short_runs(report_db):
    from gradbench.report.plots import smoothing_window, training_curves

    assert smoothing_window(10) == 3 and smoothing_window(2) == 2 and smoothing_window(1000) == 100
    with Store.open(report_db, readonly=True) as store:
        (run,) = [r for r in store.runs() if r["task"] == "linreg" and r["optimizer"] == "sgd" and r["lr"] == 0.1 and r["seed"] == 0 and r["clip"] == "none"]
        figure = training_curves(store, [run], "train_loss", x="time")
        times = [row["train_time_s"] for row in store.evaluations(run["key"])]
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == pytest.approx(times)
    assert figure.axes[0].get_xlabel().startswith("training time")


def test_plot_x_rejects_bad_values_in_one_line(report_db, tmp_path):
    output = tmp_path / "c.png"
    for args in (("curves", "--x", "wall"), ("depth", "--x", "time")):
        code, out, err = run_cli("plot", *args, "--db", str(report_db), "-o", str(output))
        assert code == 2 and out == "" and err.count("\n") == 1 and not output.exists(), err


def test_the_html_report_opens_with_provenance_then_the_summary_then_tables_worth_a_table(report_db, tmp_path):
    """Issue 12: 51 tables, mostly one-row pivots, and no provenance."""
    output = tmp_path / "report.html"
    code, _, err = run_cli("report", "--db", str(report_db), "--format", "html", "-o", str(output))
    assert code == 0, err
    page = output.read_text(encoding="utf-8")
    with Store.open(report_db, readonly=True) as store:
        runs = store.runs()
    env = json.loads(runs[0]["env"])
    assert env["gradbench"] == gradbench.__version__  # each run stores the version that made it
    assert env["command"].startswith("gradbench run ") and "--db" in env["command"]  # and the command
    provenance = page[: page.index("<h2>Summary</h2>")]
    for text in (f"{len(runs)}: {len(runs)} done", "gradbench", env["torch"], env["device_name"], "torch threads", runs[0]["started_at"][:10], html.escape(env["command"])):
        assert text in provenance, text
    # What moves a CPU step's time besides the code, as the runs stored it.
    assert f"<dt>C allocator</dt><dd>{html.escape(env['malloc'])}</dd>" in provenance
    assert "<dt>einsum order</dt><dd>" + ("cheapest (opt_einsum)" if env["opt_einsum"] else "left to right (no opt_einsum)") + "</dd>" in provenance
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Details") < page.index("<h2>Figures</h2>")
    details = page[page.index("<h2>Details") : page.index("<h2>Figures</h2>")]
    for table in re.findall(r"<table>.*?</table>", details, flags=re.DOTALL):
        rows = table.count("<tr>") - 1
        columns = table.split("</tr>", 1)[0].count("<th>") - 1
        assert rows > 1 or columns > 1, table[:200]  # a one-cell pivot repeats the summary
    assert "white-space: nowrap" in page and "td { text-align: right;" in page and "td.text { text-align: left; }" in page.replace("th, td.text", "td.text")


CHROMIUM = next((path for path in (shutil.which("chromium"), shutil.which("chromium-browser")) if path), None)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_html_report_renders_in_headless_chromium(report_db, tmp_path):
    from matplotlib.image import imread

    page = tmp_path / "report.html"
    code, _, err = run_cli("report", "--db", str(report_db), "--format", "html", "-o", str(page))
    assert code == 0, err
    shot = tmp_path / "report.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "Chromium wrote no screenshot"
    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1280)
    ink = (pixels[..., :3].mean(axis=2) < 0.5).mean()
    assert 0.005 < ink < 0.5  # text and tables drawn, not a blank or black page


def test_accuracy_is_a_percentage_on_the_curves_as_in_the_tables(report_db):
    """Issue 12: a percentage in the tables, a fraction on the curves' axis."""
    from gradbench.report.plots import training_curves

    with Store.open(report_db, readonly=True) as store:
        (run,) = [r for r in store.runs() if r["task"] != "linreg" and r["optimizer"] == "adam" and r["lr"] == 0.1 and r["seed"] == 0 and r["activation"] == "relu"]
        figure = training_curves(store, [run], "test_accuracy")
        stored = [row["test_accuracy"] for row in store.evaluations(run["key"])]
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_ydata()) == pytest.approx([100 * value for value in stored])
    assert figure.axes[0].get_ylabel() == "test accuracy (%)"
    rows = list(csv.DictReader(io.StringIO(run_cli("report", "--db", str(report_db), "--metric", "test_accuracy", "--format", "csv")[1])))
    assert {row["unit"] for row in rows} == {"%"}
    flat = list(csv.DictReader(io.StringIO(run_cli("report", "--db", str(report_db), "--format", "csv")[1])))
    with Store.open(report_db, readonly=True) as store:
        accuracy = {r["key"]: r["final_test_accuracy"] for r in store.runs() if r["final_test_accuracy"] is not None}
    percents = [float(row["test_accuracy_percent_mean"]) for row in flat if row["test_accuracy_percent_mean"]]
    assert percents and min(percents) >= 100 * min(accuracy.values()) - 1e-9 and max(percents) > 1  # percent, not a fraction
    assert "final_test_accuracy_mean" not in flat[0]


def test_layers_are_numbered_the_same_in_the_heatmap_the_depth_profile_and_diagnose(report_db):
    """Issue 12: heatmap 'layers.0, layers.2', depth 'layer 0..8', diagnose 'layer 1 of 9'."""
    from gradbench.report.plots import depth_profile, grad_heatmap

    with Store.open(report_db, readonly=True) as store:
        (run,) = [r for r in store.runs() if r["task"] != "linreg" and r["optimizer"] == "sgd" and r["lr"] == 0.1 and r["seed"] == 0 and r["activation"] == "relu" and r["clip"] == "none"]
        names, _, _ = store.layer_grad_matrix(run["key"])
        heatmap = grad_heatmap(store, run["key"])
        depth = depth_profile(store, [run])
    expected = [f"layer {i} ({name})" for i, name in enumerate(names)]
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()] == expected
    assert [t.get_text() for t in depth.axes[0].get_xticklabels()] == expected
    code, out, _ = run_cli("diagnose", "--db", str(report_db), run["key"], "--threshold", "vanishing_ratio=50")
    assert code == 0 and f"{expected[0]}, the first of {len(names)}, receives" in out


def test_the_html_report_leaves_out_pivots_of_one_cell(report_db, tmp_path):
    """One configuration: each metric's pivot would be one cell, a repeat of the summary."""
    output = tmp_path / "one.html"
    where = ["--where", "task=linreg", "--where", "optimizer=sgd", "--where", "lr=0.1", "--where", "clip=none"]
    code, _, err = run_cli("report", "--db", str(report_db), "--format", "html", "-o", str(output), *where)
    assert code == 0, err
    page = output.read_text(encoding="utf-8")
    assert "<h2>Details" not in page
    assert page[: page.index("<h2>Figures</h2>")].count("<table>") == 1 + (2 if "<h2>Performance profiles</h2>" in page else 0)


def test_a_legend_of_ten_lines_or_more_fits_in_the_figure_beside_the_plot(report_db):
    """Issue 12: with ten lines or more the legend was cut off and squashed the plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from gradbench.report.plots import training_curves

    with Store.open(report_db, readonly=True) as store:
        runs = [r for r in store.runs() if r["task"] != "linreg"]
        figure = training_curves(store, runs, "train_loss")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    axes = figure.axes[0]
    legend = axes.get_legend()
    assert len(legend.get_texts()) >= 10
    box, whole, plot = legend.get_window_extent(renderer), figure.bbox, axes.get_window_extent(renderer)
    assert whole.x0 <= box.x0 and box.x1 <= whole.x1 + 1 and whole.y0 <= box.y0 and box.y1 <= whole.y1 + 1  # not cut off
    assert not _overlaps(box, plot) and plot.width > 0.4 * whole.width and plot.height > 0.5 * whole.height  # not squashed
