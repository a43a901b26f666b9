"""Pivot tables (gradbench.report.pivot, gradbench.report.tables) checked against numbers computed straight
from SQLite: mean and std over seeds, best in bold, diverged runs never averaged in, splits by
the axes that are neither rows nor columns, and LaTeX that is escaped and balanced."""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
import subprocess

import pytest
from report_store import MLP, copy_store, mean_std, run_cli, sql_groups

from gradbench.report import build_pivots
from gradbench.report.seed_noise import mean_interval
from gradbench.report.tables import latex_escape

MLP_LABEL = "mnist1d_mlp[depth=2,num_samples=1000,width=8]"


def csv_cells(db, *args: str) -> list[dict]:
    code, out, err = run_cli("report", "--db", str(db), "--format", "csv", *args)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


@pytest.mark.parametrize(
    "metric, column",
    [("train_loss", "final_train_loss"), ("test_accuracy", "final_test_accuracy"), ("validation_loss", "final_validation_loss"), ("step_time", "median_step_time_s"), ("step_cpu_time", "median_step_cpu_s")],
)
def test_csv_means_and_stds_match_sqlite(report_db, metric, column):
    rows = csv_cells(report_db, "--metric", metric, "--rows", "optimizer,lr", "--columns", "activation,clip")
    expected = sql_groups(report_db, column)
    checked = 0
    for row in rows:
        label = row["task"] if row["task"] == "linreg" else MLP_LABEL
        activation = row["activation"] or None
        group = expected[(label, row["optimizer"], float(row["lr"]), activation, row["clip"])]
        assert int(row["runs"]) == len(group["statuses"]) == 2  # two seeds
        if not group["values"]:  # linreg has no accuracy
            assert row["mean"] == "" and row["n"] == "0"
            continue
        mean, std = mean_std(group["values"])
        scale = 100 if row["unit"] == "%" else 1  # accuracy in percent, as every output prints it
        assert (row["unit"] == "%") == (metric == "test_accuracy")
        mean, std = scale * mean, scale * std
        assert float(row["mean"]) == pytest.approx(mean, rel=1e-12)
        assert float(row["std"]) == pytest.approx(std, rel=1e-9, abs=1e-15)
        assert int(row["n"]) == len(group["values"])
        checked += 1
    assert checked >= 8


def test_markdown_cells_show_mean_std_interval_and_n_with_every_optimizer_and_lr_in_one_table(report_db):
    code, out, _ = run_cli("report", "--db", str(report_db), "--metric", "test_accuracy", "--where", "task=mnist1d_mlp", "--where", "clip=none")
    assert code == 0
    expected = sql_groups(report_db, "final_test_accuracy", "task LIKE 'mnist1d_mlp%' AND clip = 'none'")
    assert re.findall(r"^### (.*)$", out, flags=re.MULTILINE) == [MLP_LABEL]  # one table: lr is in the row labels
    assert "every learning rate run is a row" in out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["optimizer, lr \\ activation", "sigmoid", "relu"]
    labels = [line.strip("|").split("|")[0].strip() for line in lines[1:]]
    assert sorted(labels) == ["adam, lr=0.01", "adam, lr=0.1", "sgd, lr=0.01", "sgd, lr=0.1"]
    for column_index, activation in enumerate(("sigmoid", "relu"), start=1):
        for line in lines[1:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            optimizer, lr = cells[0].split(", lr=")
            values = expected[(MLP_LABEL, optimizer, float(lr), activation, "none")]["values"]
            mean, std = mean_std(values)
            low, high = mean_interval(values)
            assert cells[column_index].strip("*") == f"{100 * mean:.1f} ± {100 * std:.1f} [{100 * low:.1f}, {100 * high:.1f}] (n=2)"


def test_lower_is_better_for_losses_and_closest_to_one_for_the_gradient_ratio(report_db):
    for metric, column in (("train_loss", "final_train_loss"), ("grad_ratio", "grad_ratio_first_last")):
        rows = csv_cells(report_db, "--metric", metric, "--where", "task=mnist1d_mlp")
        expected = sql_groups(report_db, column, "task LIKE 'mnist1d_mlp%'")
        by_column: dict[tuple, list[dict]] = {}
        for row in rows:
            by_column.setdefault((row["lr"], row["clip"], row["activation"]), []).append(row)
        for (lr, clip, activation), cells in by_column.items():
            def badness(row):
                values = expected[(MLP_LABEL, row["optimizer"], float(lr), activation, clip)]["values"]
                if metric == "grad_ratio":
                    return abs(sum(math.log10(v) for v in values) / len(values))
                return sum(values) / len(values)

            best = min(badness(row) for row in cells)
            # Bold only ever marks the best (whether it is clear of the seed noise: below).
            assert all(badness(row) == best for row in cells if row["best"] == "1")


def test_tables_split_only_by_the_axes_asked_for(report_db):
    code, out, _ = run_cli("report", "--db", str(report_db), "--rows", "optimizer", "--where", "task=mnist1d_mlp", "--where", "lr=0.1")
    assert code == 0
    assert re.findall(r"^### (.*)$", out, flags=re.MULTILINE) == [MLP_LABEL]  # clip joins the row label
    assert "| sgd, clip=none |" in out and "| sgd, clip=norm:0.05 |" in out and "| adam, clip=none |" in out
    code, out, _ = run_cli("report", "--db", str(report_db), "--rows", "optimizer", "--where", "task=mnist1d_mlp", "--where", "lr=0.1", "--split", "clip")
    assert code == 0
    titles = re.findall(r"^### (.*)$", out, flags=re.MULTILINE)
    assert titles == [f"{MLP_LABEL}, clip=none", f"{MLP_LABEL}, clip=norm:0.05"]
    # With clip on the columns the two clips sit side by side in one table.
    code, out, _ = run_cli("report", "--db", str(report_db), "--where", "task=mnist1d_mlp", "--where", "lr=0.1", "--columns", "activation,clip")
    assert re.findall(r"^### (.*)$", out, flags=re.MULTILINE) == [MLP_LABEL]
    assert "| optimizer \\ activation, clip | sigmoid, none | relu, none | sigmoid, norm:0.05 | relu, norm:0.05 |" in out


def test_diverged_runs_are_counted_never_averaged_and_never_best(report_db, tmp_path):
    expected = sql_groups(report_db, "final_train_loss", "task = 'linreg'")
    # adam at lr 0.1 has the lowest linreg loss; mark one of its seeds diverged, and both
    # seeds of sgd at lr 0.01.
    def edit(connection):
        connection.execute(
            "UPDATE runs SET status = 'diverged', nonfinite_step = 7, final_train_loss = NULL WHERE key = "
            "(SELECT key FROM runs WHERE task = 'linreg' AND optimizer = 'adam' AND lr = 0.1 AND seed = 0)"
        )
        connection.execute("UPDATE runs SET status = 'diverged', final_train_loss = NULL WHERE task = 'linreg' AND optimizer = 'sgd' AND lr = 0.01")

    db = copy_store(report_db, tmp_path / "diverged.db", edit)
    rows = {(r["optimizer"], r["lr"]): r for r in csv_cells(db, "--where", "task=linreg", "--rows", "optimizer,lr")}
    survivor = next(v for v in sql_groups(db, "final_train_loss", "task = 'linreg' AND optimizer = 'adam' AND lr = 0.1")[("linreg", "adam", 0.1, None, "none")]["values"])
    adam = rows[("adam", "0.1")]
    assert (adam["n"], adam["diverged"], adam["done"]) == ("1", "1", "1")
    assert float(adam["mean"]) == pytest.approx(survivor) and adam["best"] == "0"
    sgd = rows[("sgd", "0.01")]
    assert (sgd["n"], sgd["diverged"], sgd["mean"]) == ("0", "2", "")
    complete = {k: mean_std(v["values"])[0] for k, v in expected.items() if (k[1], k[2]) not in {("adam", 0.1), ("sgd", 0.01)}}
    best = min(complete, key=complete.get)
    assert [k for k, r in rows.items() if r["best"] == "1"] == [(best[1], f"{best[2]:g}")]
    code, out, _ = run_cli("report", "--db", str(db), "--where", "task=linreg", "--rows", "optimizer,lr")
    assert code == 0
    assert f"| adam, lr=0.1 | {survivor:.3g} (n=1; 1 diverged) |" in out
    assert "| sgd, lr=0.01 | diverged |" in out


def test_verdicts_as_the_metric(report_db):
    code, out, _ = run_cli("report", "--db", str(report_db), "--metric", "verdict", "--where", "task=mnist1d_mlp", "--where", "lr=0.01")
    assert code == 0 and "diagnosis" in out and "**" not in out  # no best for verdicts
    assert re.search(r"\| sgd \| (healthy|vanishing|dead_units|saturated|not_learning)", out)


def test_latex_escape_covers_every_special_character():
    text = r"a & b % c $ d # e _ f { g } h ~ i ^ j \ k"
    assert latex_escape(text) == r"a \& b \% c \$ d \# e \_ f \{ g \} h \textasciitilde{} i \textasciicircum{} j \textbackslash{} k"


def test_latex_escape_writes_comparisons_as_symbols_and_escapes_angle_brackets_and_bars():
    # Under OT1, a bare > prints as an inverted question mark: "test accuracy ¿= 50%".
    assert latex_escape("a >= 1, b <= 2, c < d > e | f") == r"a $\geq$ 1, b $\leq$ 2, c \textless{} d \textgreater{} e \textbar{} f"


def test_latex_targets_read_geq_and_markdown_headers_escape_bars(report_db):
    code, out, _ = run_cli("report", "--db", str(report_db), "--format", "latex", "--metric", "test_accuracy", "--where", "task=mnist1d_mlp")
    assert code == 0 and "Target: test accuracy $\\geq$" in out and ">" not in out and "<" not in out
    from gradbench.report.pivot import METRICS, CellStats, Pivot, PivotReport
    from gradbench.report.tables import markdown

    cell = CellStats(1, 1, 0, 0, [1.0], 1.0, 0.0)
    pivot = Pivot("t", {}, ("optimizer",), ("activation",), [("a|b",)], [("c|d",)], {(("a|b",), ("c|d",)): cell}, METRICS["train_loss"])
    text = markdown(PivotReport([pivot], {}, METRICS["train_loss"]))
    assert "| optimizer \\ activation | c\\|d |" in text and "| a\\|b |" in text


def _unescaped(text: str, character: str) -> list[str]:
    return re.findall(r"(?<!\\)" + re.escape(character), text)


def _balanced(text: str) -> bool:
    depth = 0
    for match in re.finditer(r"\\[{}]|[{}]", text):
        token = match.group()
        if token in "{}":
            depth += 1 if token == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def test_latex_is_booktabs_escaped_and_balanced(report_db):
    code, out, _ = run_cli("report", "--db", str(report_db), "--format", "latex", "--metric", "test_accuracy", "--where", "task=mnist1d_mlp")
    assert code == 0
    assert out.count("\\begin{table}") == out.count("\\end{table}") == 1  # one per task and metric
    assert out.count("\\toprule") == out.count("\\midrule") == out.count("\\bottomrule") == 1
    assert "\\textbf{" in out and "$\\pm$" in out and "±" not in out
    assert _balanced(out)
    body = "\n".join(line for line in out.splitlines() if not line.startswith("%"))
    for character in ("_", "%", "#", "&"):
        if character == "&":  # column separators are " & "; a literal one would be escaped
            assert all(part.endswith(" ") for part in body.split("&")[:-1] if not part.endswith("\\"))
            continue
        assert not _unescaped(body, character), character
    assert "mnist1d\\_mlp" in out and "50\\%" in out
    # The ratio uses math for its spread.
    code, out, _ = run_cli("report", "--db", str(report_db), "--format", "latex", "--metric", "grad_ratio", "--where", "task=mnist1d_mlp")
    assert "$\\times/\\div$ $10^{" in out and _balanced(out)


LATEX_ENGINES = [name for name in ("pdflatex", "lualatex", "xelatex", "tectonic") if shutil.which(name)]


@pytest.mark.skipif(not LATEX_ENGINES, reason="no LaTeX engine installed (pdflatex, lualatex, xelatex, tectonic)")
def test_latex_compiles(report_db, tmp_path):
    code, out, _ = run_cli("report", "--db", str(report_db), "--format", "latex", "--metric", "grad_ratio")
    document = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + out + "\n\\end{document}\n"
    (tmp_path / "table.tex").write_text(document, encoding="utf-8")
    engine = LATEX_ENGINES[0]
    command = [engine, "table.tex"] if engine == "tectonic" else [engine, "-interaction=nonstopmode", "-halt-on-error", "table.tex"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]


def test_html_fragments_and_markdown_hold_the_same_cells(report_db):
    from gradbench.report.tables import cell_text, html_tables, markdown
    from gradbench.store import Store

    with Store.open(report_db, readonly=True) as store:
        report = build_pivots(store.runs(), metric="test_loss")
    text, page = markdown(report), html_tables(report)
    for pivot in report.pivots:
        for cell in pivot.cells.values():
            assert cell_text(pivot, cell) in text and cell_text(pivot, cell) in page


def test_the_flat_table_stays_the_default(report_db):
    code, out, _ = run_cli("report", "--db", str(report_db))
    assert code == 0 and "| task | optimizer | lr | activation | clip |" in out and "###" not in out
    assert out.startswith("init default; steps 20;") and "validation 0.2" in out.splitlines()[0]


def test_a_task_knob_as_an_axis(report_db):
    rows = csv_cells(report_db, "--where", "task=mnist1d_mlp", "--columns", "depth", "--rows", "optimizer,activation")
    assert {r["depth"] for r in rows} == {"2"} and {r["task"] for r in rows} == {"mnist1d_mlp[num_samples=1000,width=8]"}
    assert MLP.startswith("mnist1d_mlp[depth=2")


def test_a_knob_of_one_task_is_no_axis_of_another(report_db):
    code, out, err = run_cli("report", "--db", str(report_db), "--columns", "depth", "--rows", "optimizer,lr,activation,clip")
    assert code == 0, err
    assert "| optimizer, lr, activation, clip \\ depth | - |" in out  # linreg has no depth
    assert "| optimizer, lr, activation, clip \\ depth | 2 |" in out


@pytest.fixture(scope="module")
def mixed_db(report_db, tmp_path_factory):
    """The small store plus linreg runs made without a validation split."""
    db = copy_store(report_db, tmp_path_factory.mktemp("mixed") / "mixed.db")
    code, _, err = run_cli("run", "--task", "linreg", "--lr", "0.01,0.1", "--steps", "5", "--db", str(db), "--no-progress")
    assert code == 0, err
    return db


def test_settings_are_axes_of_where_rows_and_columns(mixed_db):
    every = csv_cells(mixed_db, "--where", "task=linreg", "--metric", "train_loss", "--rows", "optimizer,lr", "--columns", "validation")
    assert {float(r["validation"]) for r in every} == {0, 0.2}
    split = csv_cells(mixed_db, "--where", "validation=0.2", "--where", "task=linreg", "--metric", "train_loss")
    unsplit = csv_cells(mixed_db, "--where", "validation=0", "--where", "task=linreg", "--metric", "train_loss")
    assert sum(int(r["runs"]) for r in split) == 8 and sum(int(r["runs"]) for r in unsplit) == 2
    rows = csv_cells(mixed_db, "--where", "device=cpu", "--where", "task=linreg", "--rows", "device", "--columns", "threads")
    assert {(r["device"], r["threads"]) for r in rows} == {("cpu", "1")}


def test_tuning_a_mixed_store_suggests_keeping_the_runs_with_a_split(mixed_db):
    code, out, err = run_cli("report", "--db", str(mixed_db), "--tuned")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--where validation=0.2" in err and "--tune-on train_loss" in err
    code, out, err = run_cli("report", "--db", str(mixed_db), "--tuned", "--where", "validation=0.2")
    assert code == 0, err
    assert "tuned per configuration on the final validation loss" in out


def test_where_task_matches_any_spelling_run_accepts(report_db):
    canonical = csv_cells(report_db, "--where", f"task={MLP_LABEL}", "--metric", "train_loss")
    assert canonical and {r["task"] for r in canonical} == {MLP_LABEL}
    for spelling in (MLP, "mnist1d_mlp[width=8,depth=2,num_samples=1000]", "mnist1d_mlp[depth=2,width=8,num_samples=1000,norm=none,residual=false]"):
        assert csv_cells(report_db, "--where", f"task={spelling}", "--metric", "train_loss") == canonical, spelling
    code, _, err = run_cli("report", "--db", str(report_db), "--where", "task=mnist1d_mlp[depth=3,width=8,num_samples=1000]")
    assert code == 2 and "no runs in" in err and "match --where" in err
    code, out, err = run_cli("report", "--db", str(report_db), "--where", "task=mnist1d_mlp[colour=3]")
    assert code == 2 and out == "" and err.count("\n") == 1 and "invalid --where task 'mnist1d_mlp[colour=3]'" in err and "colour" in err


def test_the_issue_grid_puts_sgd_and_adam_in_one_table_per_task_and_metric_in_md_latex_and_csv(tmp_path):
    """Issue 12: sgd and adam at their own default learning rates, two activations, two clips
    gave four one-row tables, every cell bold."""
    db = tmp_path / "grid.db"
    code, _, err = run_cli(
        "run", "--task", "mnist1d_mlp[num_samples=500]", "--optimizer", "sgd,adam", "--activation", "relu,tanh", "--clip", "none,norm:1",
        "--steps", "4", "--eval-every", "2", "--no-progress", "--db", str(db),
    )
    assert code == 0, err
    code, out, _ = run_cli("report", "--db", str(db), "--metric", "train_loss,test_accuracy")
    assert code == 0
    assert len(re.findall(r"^### ", out, flags=re.MULTILINE)) == 2  # one task, two metrics
    for label in ("sgd, lr=0.1, clip=none", "sgd, lr=0.1, clip=norm:1", "adam, lr=0.001, clip=none", "adam, lr=0.001, clip=norm:1"):
        assert out.count(f"| {label} |") == 2
    assert "**" not in out  # one seed: no noise estimate, so nothing is bold
    code, out, _ = run_cli("report", "--db", str(db), "--format", "latex")
    assert out.count("\\begin{table}") == 1 and "adam, lr=0.001, clip=none &" in out and "\\textbf" not in out
    rows = csv_cells(db, "--metric", "train_loss")
    assert {(r["optimizer"], r["lr"], r["clip"]) for r in rows} == {(o, lr, c) for o, lr in (("sgd", "0.1"), ("adam", "0.001")) for c in ("none", "norm:1")}
    assert {r["best"] for r in rows} == {"0"}


def _set_losses(connection, losses):
    """Give the linreg runs of (optimizer, lr) the final train losses listed, one per seed."""
    for (optimizer, lr), values in losses.items():
        for seed, value in enumerate(values):
            connection.execute(
                "UPDATE runs SET final_train_loss = ? WHERE task = 'linreg' AND optimizer = ? AND lr = ? AND seed = ?", (value, optimizer, lr, seed)
            )


def _bold(db, *where):
    return {(r["optimizer"], r["lr"]) for r in csv_cells(db, "--where", "task=linreg", "--metric", "train_loss", *where) if r["best"] == "1"}


def test_bold_only_where_the_best_beats_the_seed_noise(report_db, tmp_path):
    clear = {("sgd", 0.01): [1.0, 1.01], ("sgd", 0.1): [5.0, 5.02], ("adam", 0.01): [6.0, 6.01], ("adam", 0.1): [7.0, 7.03]}
    db = copy_store(report_db, tmp_path / "clear.db", lambda c: _set_losses(c, clear))
    assert _bold(db) == {("sgd", "0.01")}
    # The same means, but seeds spread wider than the gap: nothing is bold.
    noisy = {("sgd", 0.01): [0.0, 2.0], ("sgd", 0.1): [0.2, 2.2], ("adam", 0.01): [6.0, 6.01], ("adam", 0.1): [7.0, 7.03]}
    db = copy_store(report_db, tmp_path / "noisy.db", lambda c: _set_losses(c, noisy))
    assert _bold(db) == set()
    # One seed says nothing about the noise; one entry in a column has nothing to beat.
    db = copy_store(report_db, tmp_path / "clear1.db", lambda c: _set_losses(c, clear))
    assert _bold(db, "--where", "seed=0") == set()
    assert _bold(db, "--where", "optimizer=sgd", "--where", "lr=0.01") == set()


def test_new_report_flags_reject_bad_values_in_one_line(report_db, tmp_path):
    output = tmp_path / "out.md"
    for args in (("--split", "colour"), ("--metric", "train_loss,speed"), ("--split", "optimizer"), ("--profiles", "--split", "clip")):
        code, out, err = run_cli("report", "--db", str(report_db), *args, "-o", str(output))
        assert code == 2 and out == "" and err.count("\n") == 1, (args, err)
        assert not output.exists()


def test_the_gradient_ratio_caption_says_geometric(report_db):
    """Issue 12: the caption said mean +- std although the cells are geometric."""
    code, out, _ = run_cli("report", "--db", str(report_db), "--metric", "grad_ratio", "--where", "task=mnist1d_mlp")
    assert code == 0
    (caption,) = {line for line in out.splitlines() if line.startswith("first/last-layer gradient ratio:")}
    assert caption.startswith("first/last-layer gradient ratio: geometric mean ×/÷ 10^(std of log10) over seeds") and "mean ± std" not in caption


@pytest.fixture(scope="module")
def precision_db(tmp_path_factory):
    """linreg under fp32 and under bf16: precision varies, compile does not."""
    db = tmp_path_factory.mktemp("precision") / "precision.db"
    for precision in ("fp32", "bf16"):
        code, _, err = run_cli("run", "--task", "linreg", "--lr", "0.01,0.1", "--steps", "5", "--precision", precision, "--db", str(db), "--no-progress")
        assert code == 0, err
    return db


def test_precision_is_an_axis_of_tables_where_export_and_plots_named_only_where_it_varies(precision_db, tmp_path):
    cells = csv_cells(precision_db, "--metric", "train_loss", "--rows", "lr", "--columns", "precision")
    assert {r["precision"] for r in cells} == {"fp32", "bf16"}
    assert sum(int(r["runs"]) for r in csv_cells(precision_db, "--where", "precision=bf16", "--metric", "train_loss")) == 2
    # Booleans as a suite spells them, and as Python does.
    for spelling in ("false", "False"):
        assert sum(int(r["runs"]) for r in csv_cells(precision_db, "--where", f"compile={spelling}", "--metric", "train_loss")) == 4
    code, _, err = run_cli("report", "--db", str(precision_db), "--where", "compile=true")
    assert code == 2 and "match --where" in err
    code, out, err = run_cli("report", "--db", str(precision_db))
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("| "))
    assert "| precision |" in header and "compile" not in header  # varies: a column; at its default: not named
    assert "compile" not in out.splitlines()[0] and "record no activation statistics" not in out
    code, out, err = run_cli("report", "--db", str(precision_db), "--where", "precision=bf16")
    assert "precision bf16" in out.splitlines()[0]  # shared by every row, away from the default: in the constants line
    code, out, err = run_cli("export", "--what", "runs", "--db", str(precision_db))
    assert sorted((r["precision"], r["compile"]) for r in csv.DictReader(io.StringIO(out))) == [("bf16", "0")] * 2 + [("fp32", "0")] * 2
    figure = tmp_path / "curves.png"
    code, _, err = run_cli("plot", "curves", "--db", str(precision_db), "--by", "lr,precision", "-o", str(figure))
    assert code == 0 and figure.stat().st_size > 0, err
    code, _, err = run_cli("plot", "curves", "--db", str(precision_db), "--by", "lr", "-o", str(tmp_path / "merged.png"))
    assert code == 2 and "precision" in err  # a varying precision may not be merged into one line
