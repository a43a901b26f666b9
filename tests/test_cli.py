"""End to end through the command line: run, resume, report, export, list, and bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gradbench.cli import main
from gradbench.grid.labels import varying_labels
from gradbench.store import Store

SMALL = "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def db(tmp_path, capsys) -> Path:
    """A database holding two finished runs (sgd and adam)."""
    path = tmp_path / "results.db"
    code, _, err = run_cli(capsys, "run", "--task", SMALL, "--optimizer", "sgd,adam", "--steps", "30", "--db", str(path), "--no-progress")
    assert code == 0, err
    return path


def test_run_prints_the_table_and_a_rerun_trains_nothing(db, capsys):
    code, out, err = run_cli(capsys, "run", "--task", SMALL, "--optimizer", "sgd,adam", "--steps", "30", "--db", str(db), "--no-progress")
    assert code == 0
    assert "ran 0 (nothing new), 2 already stored" in err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| optimizer"))
    for column in ("final train loss", "test acc %", "steps to target", "wall step ms", "cpu step ms", "grad first/last", "clip", "activation"):
        assert column in header
    assert any(line.startswith("| sgd |") for line in lines) and any(line.startswith("| adam |") for line in lines)


def test_report_reads_the_store_alone(db, capsys):
    code, out, _ = run_cli(capsys, "report", "--db", str(db))
    assert code == 0 and "| sgd |" in out
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["optimizer"] for r in rows] == ["sgd", "adam"]
    with Store.open(db, readonly=True) as store:
        by_optimizer = {r["optimizer"]: r for r in store.runs()}
    for row in rows:
        assert float(row["final_train_loss_mean"]) == pytest.approx(by_optimizer[row["optimizer"]]["final_train_loss"])
        assert row["done"] == "1"


def test_export_and_reports_give_what_each_optimizer_keeps_in_memory(db, capsys):
    """SMALL has 3754 parameter elements in 8 tensors: Adam keeps two float32 moments of each and
    a float32 step counter per tensor; plain SGD keeps nothing. On the CPU there is no peak."""
    adam = 2 * 3754 * 4 + 8 * 4
    code, out, _ = run_cli(capsys, "export", "--db", str(db), "--what", "runs")
    rows = {row["optimizer"]: row for row in csv.DictReader(io.StringIO(out))}
    assert code == 0 and rows["adam"]["optimizer_state_bytes"] == str(adam) and rows["sgd"]["optimizer_state_bytes"] == "0"
    assert rows["adam"]["peak_memory_bytes"] == rows["sgd"]["peak_memory_bytes"] == ""
    code, out, _ = run_cli(capsys, "report", "--db", str(db))
    lines = out.splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("| optimizer")).strip("|").split("|")]
    assert code == 0 and "opt state" in header and "peak cuda mem" not in header
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith(("| sgd", "| adam"))}
    assert cells["sgd"][header.index("opt state")] == "0 B" and cells["adam"][header.index("opt state")] == f"{adam / 1024:.3g} KiB"
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--metric", "state_bytes", "--rows", "optimizer", "--format", "csv")
    assert code == 0 and {row["optimizer"]: float(row["mean"]) for row in csv.DictReader(io.StringIO(out))} == {"sgd": 0.0, "adam": float(adam)}
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--where", "optimizer=adam")
    assert code == 0 and "opt state" not in out  # one optimizer: the same cost everywhere, no column


def test_export_and_reports_give_cpu_step_times_beside_wall_step_times(db, capsys, tmp_path):
    connection = sqlite3.connect(db)
    medians = {}
    for key in [row[0] for row in connection.execute("SELECT key FROM runs")]:
        cpu = [row[0] for row in connection.execute("SELECT step_cpu_s FROM steps WHERE run_key = ? ORDER BY step", (key,))]
        assert len(cpu) == 30 and all(value > 0 for value in cpu)
        medians[key] = statistics.median(cpu)
    connection.close()
    code, out, _ = run_cli(capsys, "export", "--db", str(db), "--what", "runs")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2
    columns = list(rows[0])
    assert columns.index("median_step_cpu_s") == columns.index("median_step_time_s") + 1
    for row in rows:
        assert float(row["median_step_cpu_s"]) == medians[row["key"]]
        assert json.loads(row["env"])["step_cpu_clock"] == "thread_time"
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--format", "csv")
    assert code == 0
    assert sorted(float(row["median_step_cpu_s_mean"]) for row in csv.DictReader(io.StringIO(out))) == sorted(medians.values())
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--metric", "step_cpu_time", "--rows", "optimizer")
    assert code == 0 and "median CPU step time (ms)" in out
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--metric", "step_time", "--rows", "optimizer")
    assert code == 0 and "median wall step time (ms)" in out and "CPU" not in out
    # Runs stored before CPU times (or on CUDA): the flat table shows the wall time alone.
    older = tmp_path / "older.db"
    shutil.copy(db, older)
    connection = sqlite3.connect(older)
    connection.execute("UPDATE runs SET median_step_cpu_s = NULL")
    connection.commit()
    connection.close()
    code, out, _ = run_cli(capsys, "report", "--db", str(older))
    header = next(line for line in out.splitlines() if line.startswith("| optimizer"))
    assert code == 0 and "wall step ms" in header and "cpu step ms" not in header


def test_export_layers_is_long_format_and_matches_the_store(db, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", "--db", str(db), "--what", "layers")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert list(rows[0]) == [
        "run_key", "step", "layer_index", "layer_name", "grad_norm", "grad_norm_after_clip", "weight_norm", "update_ratio",
        "weight_grad_norm", "bias_grad_norm", "output_grad_norm",
    ]
    assert len(rows) == 2 * 3 * 4  # 2 runs, steps 1, 11 and 21 recorded, 4 layers
    assert {int(r["step"]) for r in rows} == {1, 11, 21}
    assert all(r["grad_norm_after_clip"] == r["grad_norm"] for r in rows)  # no clipping
    detailed = [r for r in rows if r["step"] == "1"]  # details every 100 steps: step 1 only
    assert len(detailed) == 2 * 4 and all(float(r["weight_norm"]) > 0 and float(r["update_ratio"]) > 0 for r in detailed)
    assert all(r["weight_norm"] == r["update_ratio"] == r["output_grad_norm"] == "" for r in rows if r["step"] != "1")
    assert all(float(r["output_grad_norm"]) > 0 for r in detailed)  # the back-propagated gradient, detailed steps only
    for r in rows:  # the weight and bias parts make up the total
        assert float(r["grad_norm"]) == pytest.approx(math.hypot(float(r["weight_grad_norm"]), float(r["bias_grad_norm"])), rel=1e-9)
    connection = sqlite3.connect(db)
    key, step, index, norm = connection.execute("SELECT run_key, step, layer_index, grad_norm FROM layer_grad_norms ORDER BY run_key, step, layer_index LIMIT 1").fetchone()
    connection.close()
    assert (rows[0]["run_key"], int(rows[0]["step"]), int(rows[0]["layer_index"]), rows[0]["layer_name"]) == (key, step, index, "layers.0")
    assert float(rows[0]["grad_norm"]) == pytest.approx(norm, rel=1e-12)
    output = tmp_path / "runs.json"
    code, out, _ = run_cli(capsys, "export", "--db", str(db), "--what", "runs", "--format", "json", "--output", str(output))
    runs = json.loads(output.read_text())
    assert code == 0 and out == "" and len(runs) == 2
    assert runs[0]["config"]["steps"] == 30 and runs[0]["env"]["threads"] == 1


def test_list_tasks_shows_each_description_and_its_knobs(capsys):
    from gradbench import TASKS

    code, out, _ = run_cli(capsys, "list", "tasks")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(lines) == set(TASKS)
    for name, task in TASKS.items():
        assert task.description in lines[name] and f"batch_size={task.batch_size}" in lines[name]
        for knob in task.knobs:
            assert f"{knob}=" in lines[name]
    assert "norm=none (none|batch|layer)" in lines["mnist_mlp"] and "length=100" in lines["adding_lstm"]


def test_real_dataset_tasks_run_from_the_data_dir_which_is_not_part_of_the_key(tiny_data, tmp_path, capsys):
    db = tmp_path / "real.db"
    task = "mnist_mlp[depth=2,width=16]"
    code, out, err = run_cli(capsys, "run", "--task", task, "--steps", "10", "--data-dir", str(tiny_data.root), "--db", str(db), "--no-progress")
    assert code == 0, err
    assert "ran 1 (1 done)" in err and "mnist_mlp[depth=2,width=16]" in out
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data.root, moved)
    code, _, err = run_cli(capsys, "run", "--task", task, "--steps", "10", "--data-dir", str(moved), "--db", str(db), "--no-progress")
    assert code == 0 and "ran 0 (nothing new), 1 already stored" in err
    with Store.open(db, readonly=True) as store:
        (run,) = store.runs()
    assert str(tiny_data.root) not in run["config"]
def test_diagnose_prints_each_runs_verdicts_in_plain_words(db, capsys):
    with Store.open(db, readonly=True) as store:
        runs = store.runs()
    code, out, _ = run_cli(capsys, "diagnose", "--db", str(db))
    assert code == 0
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    labels = varying_labels([json.loads(run["config"]) for run in runs])  # the axes that vary, as report names them
    assert len(set(labels)) == 2 and all("hyperparameters" not in label and "betas" not in label for label in labels)
    for block, run, label in zip(blocks, runs, labels):
        header, *details = block.splitlines()
        # 30 steps: the gradients flow, but the loss has not fallen 5% below chance yet.
        assert header == f"{run['key']}  {label}: not_learning"
        assert details and details[0].startswith("  not_learning: the training loss ends at ")
    code, out, _ = run_cli(capsys, "diagnose", "--db", str(db), "--threshold", "learning_progress=0.0001")  # adam's loss did fall
    assert code == 0 and f"{runs[1]['key']}  {labels[1]}: healthy\n  healthy: layer 0 (layers.0), the first of 4, receives " in out
    code, out, _ = run_cli(capsys, "diagnose", "--db", str(db), runs[1]["key"][:6], "--threshold", "vanishing_ratio=50")
    assert code == 0 and out.startswith(f"{runs[1]['key']}  ") and out.count("\n\n") == 0
    assert "vanishing: layer 0 (layers.0), the first of 4, receives" in out and "of the last layer's gradient (median over step" in out


def test_report_ends_with_a_verdict_column_and_thresholds_change_it(db, capsys):
    code, out, _ = run_cli(capsys, "report", "--db", str(db))
    header = next(line for line in out.splitlines() if line.startswith("| optimizer"))
    assert code == 0 and header.endswith("| verdict |")
    assert all(line.endswith("| not_learning |") for line in out.splitlines() if line.startswith(("| sgd", "| adam")))
    code, out, _ = run_cli(capsys, "report", "--db", str(db), "--format", "csv", "--threshold", "vanishing_ratio=50")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["verdict"] for r in rows] == ["vanishing, not_learning", "vanishing, not_learning"]


def test_export_activations(db, capsys):
    code, out, _ = run_cli(capsys, "export", "--db", str(db), "--what", "activations")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert list(rows[0]) == [
        "run_key", "step", "site_index", "site_name", "module", "kind", "units", "dead_fraction", "saturated_fraction", "mean", "std",
        "pinned_fraction", "output_grad_norm",
    ]
    assert len(rows) == 2 * 3  # two runs, details at step 1, three ReLU sites
    assert {(r["step"], r["site_name"], r["kind"], r["saturated_fraction"], r["pinned_fraction"]) for r in rows} == {("1", f"layers.{i}", "rectifier", "", "") for i in (1, 3, 5)}
    assert all(float(r["output_grad_norm"]) > 0 for r in rows)


def test_list_shows_every_registered_name(capsys):
    from gradbench import ACTIVATIONS, INITS, OPTIMIZERS, TASKS

    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in [*OPTIMIZERS, *ACTIVATIONS, *INITS, *TASKS, "norm:C", "value:C"]:
        assert f"  {name}" in out
    code, out, _ = run_cli(capsys, "list", "optimizers")
    assert "full-batch gradient descent" in out and "relu" not in out


def test_a_diverging_cell_is_stored_and_the_sweep_goes_on(tmp_path, capsys):
    path = tmp_path / "r.db"
    code, out, err = run_cli(capsys, "run", "--task", SMALL, "--lr", "1000,0.1", "--steps", "60", "--db", str(path), "--no-progress")
    assert code == 0
    assert "1 diverged, 1 done" in err
    assert "diverged" in out
    with Store.open(path, readonly=True) as store:
        statuses = {r["lr"]: (r["status"], r["nonfinite_step"]) for r in store.runs()}
    assert statuses[0.1] == ("done", None)
    assert statuses[1000.0][0] == "diverged" and statuses[1000.0][1] >= 1


BAD_INPUTS = [
    (["run", "--optimizer", "adamm"], r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); choose from: gd, sgd"),
    (["run", "--optimizer", "adam[lr=abc]"], r"invalid adam hyper-parameter lr='abc': expected a number"),
    (["run", "--lr", "-1"], r"invalid learning rate -1.0: must be a positive number"),
    (["run", "--optimizer", "sgd[lr=-0.5]"], r"invalid learning rate lr=-0.5"),
    (["run", "--clip", "norm:-1"], r"invalid clip 'norm:-1'.*forms: none, norm:C, value:C"),
    (["run", "--activation", "relu6"], r"unknown activation 'relu6' \(did you mean 'relu'\?\)"),
    (["run", "--init", "he_normal"], r"unknown init 'he_normal'.*choose from: default"),
    (["run", "--task", "mnist1d_mlp[depth=-1]"], r"invalid knob depth=-1 for task .mnist1d_mlp.: expected an integer >= 0"),
    (["run", "--task", "cifar"], r"unknown task 'cifar' \(did you mean 'cifar10_mlp'\?\); choose from: mnist1d_mlp, .*, linreg$"),
    (["run", "--task", "mnist_mlp[norm=bach]"], r"--task: invalid knob norm='bach' for task 'mnist_mlp'; choose from: none, batch, layer$"),
    (["run", "--task", "adding_lstm[length=1]"], r"invalid knob length=1 for task 'adding_lstm': the adding problem needs at least 2 steps"),
    (["run", "--task", "mnist1d_mlp[batch_size=32]", "--batch-size", "64"], r"sets batch_size, and so does batch_sizes \(--batch-size\): set it in one place"),
    (
        ["run", "--task", "mnist_mlp", "--data-dir", "{tmp}/nodata"],
        r"dataset 'mnist' was not found in '\S+/nodata'; fetch it with: gradbench run --task mnist_mlp --data-dir \S+/nodata --db \S+ --download$",
    ),
    (["run", "--seeds", "a"], r"invalid --seeds value 'a'"),
    (["run", "--steps", "0"], r"invalid step 0"),
    (["run", "--threads", "x"], r"argument --threads: invalid int value: 'x'"),
    (["run", "--device", "tpu"], r"--device: invalid device 'tpu'; choose from: cpu, cuda"),
    (["run", "{suite}"], r"suite.toml, line 3: unknown optimizer 'adamm'"),
    (["run", "{tmp}/missing.toml"], r"cannot read suite file"),
    (["run", "--db", "{notes}"], r"is not a gradbench database \(not an SQLite file\)"),
    (["report", "--db", "{tmp}/missing.db"], r"no gradbench database at"),
    (["report", "--db", "{notes}"], r"is not a gradbench database"),
    (["report", "--format", "xml"], r"argument --format: invalid choice: 'xml' \(choose from"),
    (["export", "--what", "grads"], r"argument --what: invalid choice: 'grads'"),
    (["diagnose", "zzzz"], r"no run 'zzzz' in .*results.db'; 'gradbench export --what runs' lists the keys"),
    (["diagnose", ""], r"run prefix '' matches 2 runs \([0-9a-f]{16}, [0-9a-f]{16}\); give more of the key"),
    (["diagnose", "--threshold", "vanishing=1e-3"], r"unknown threshold 'vanishing' \(did you mean 'vanishing_ratio'\?\)"),
    (["diagnose", "--db", "{tmp}/missing.db"], r"no gradbench database at"),
    (["report", "--threshold", "dead_fraction=2"], r"invalid threshold dead_fraction=2.0: a fraction in \(0, 1\]"),
    (["run", "--record-every", "10", "--detail-every", "15"], r"--detail-every: invalid detail_every 15: must be 0 or a multiple of record_every \(10\)"),
    (["export", "--what", "layers", "--output", "{tmp}/no/dir/x.csv"], r"does not exist"),
    (["list", "things"], r"invalid choice: 'things'"),
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
    # Values Python's literal parser fails on other than with ValueError ({{ }} are format escapes).
    (["run", "--optimizer", "adam[lr={{[1]:2}}]"], r"--optimizer: malformed value '\{\[1\]:2\}' for 'lr' in 'adam\[lr=\{\[1\]:2\}\]'$"),
    (["run", "--task", "linreg[dim={{{{}}}}]"], r"--task: malformed value '\{\{\}\}' for 'dim'"),
    (["run", "{values}"], r"values.toml, line 2: unsupported value '1j' for 'maximize' in 'sgd\[maximize=1j\]': give a number, a string, true/false, none, or a tuple of them$"),
    (["report", "--where", "task=linreg[dim={{{{}}}}]"], r"invalid --where task 'linreg\[dim=\{\{\}\}\]': malformed value"),
    # Values a cell's key (JSON) cannot hold.
    (["run", "--optimizer", "sgd[maximize=b'x']"], r"unsupported value \"b'x'\" for 'maximize'"),
    (["run", "--optimizer", "sgd[dampening=set()]"], r"malformed value 'set\(\)' for 'dampening'"),
    (["run", "--optimizer", "sgd[maximize=1j]"], r"unsupported value '1j' for 'maximize'"),
    (["run", "--optimizer", "sgd[lr=" + "-" * 100_000 + "1]"], r"value '-{40}'\.\.\. \(100001 characters\) is too long for 'lr' .*: at most 1000 characters$"),
    # Grids too large to build, refused before they are.
    (["run", "--task", "linreg", "--seeds", "0-10000000", "--dry-run"], r"--seeds '0-10000000' gives 10000001 values, more cells than the limit of 100000; raise it with --max-cells 10000001$"),
    (["run", "--task", "linreg", "--seeds", ",".join(["0-99999"] * 1000), "--dry-run"], r"--seeds '0-99999,0-99999,.*\(7999 characters\) gives 100000000 values, more cells than the limit of 100000; raise it with --max-cells 100000000$"),
    (
        ["run", "--task", "linreg", "--optimizer", "sgd,adam", "--lr", "0.1,0.2", "--seeds", "0-999", "--max-cells", "1000"],
        r"the suite asks for 4000 cells \(2 optimizers x 2 learning rates x 1000 seeds\), more than the limit of 1000; raise it with --max-cells 4000 \(expand\(\.\.\., max_cells=N\) from Python\)$",
    ),
    (["run", "--task", "linreg", "--max-cells", "0"], r"invalid --max-cells 0: give a number of cells >= 1$"),
    # A plugin that ends the process, and a database that cannot be created.
    (["list", "--plugin", "{exit3}"], r"plugin '\S+exit3.py' called sys.exit\(3\) while it was imported; a plugin should only register things$"),
    (["run", "--plugin", "{exit3}", "--task", "linreg"], r"called sys.exit\(3\)"),
    (["run", "--task", "linreg", "--steps", "5", "--db", "/proc/gradbench-test.db"], r"cannot create database '/proc/gradbench-test.db': .*; choose another --db path$"),
    # Paths the system refuses, and integers no float holds.
    (["run", "--task", "linreg", "--steps", "5", "--db", "{tmp}/" + "x" * 300 + ".db"], r"cannot use '\S+'\.\.\. \(\d+ characters\): File name too long$"),
    (["report", "--db", "{tmp}/" + "x" * 300 + ".db"], r"File name too long$"),
    (["run", "--task", "linreg", "--plugin", "{tmp}/" + "x" * 300 + ".py", "--dry-run"], r"File name too long$"),
    (["export", "--what", "runs", "--output", "{tmp}/" + "x" * 300 + ".csv"], r"File name too long$"),
    (["run", "--optimizer", "sgd[lr=1" + "0" * 400 + "]"], r"--optimizer: integer out of range in '1000.*\(401 characters\) for 'lr' in .*: at most 2\*\*63-1 in size$"),
    (["run", "--init", "kaiming_normal[gain=1" + "0" * 400 + "]"], r"--init: integer out of range in"),
    (["report", "--where", "task=linreg[dim=" + "x" * 100_000 + "]"], r"invalid --where task 'linreg\[dim=x+'\.\.\. \(100012 characters\): "),
    (["run", "--clip", "x" * 100_000 + ":1"], r"unknown clip 'x+'\.\.\. \(100000 characters\)"),
    (["run", "--optimizer", "sgd[maximize=(true,)]"], r"invalid sgd hyper-parameter maximize=\(True,\): expected true or false$"),
    (["run", "--schedule", "cosin"], r"--schedule: unknown schedule 'cosin' \(did you mean 'cosine'\?\); choose from: constant, step, "),
    (["run", "--schedule", "step[gamma=2]"], r"--schedule: invalid schedule step: gamma=2.0 must be in \(0, 1\]$"),
    (["run", "--init", "orthogonal[scope=input]"], r"--init: invalid init scope='input' for 'orthogonal'; choose from: all, hidden, output, recurrent$"),
    (["run", "--task", "mnist1d_mlp[loss=hinge]"], r"--task: invalid knob loss='hinge' for task 'mnist1d_mlp'; choose from: cross_entropy, mse$"),
    (["run", "--task", "linreg[order=random]"], r"--task: invalid knob order='random' for task 'linreg'; choose from: shuffled, fixed$"),
    (["run", "--jacobian-every", "-1"], r"--jacobian-every: invalid jacobian_every -1: must be an integer >= 0 \(0: no Jacobian statistics\)$"),
    (["export", "--what", "jacobian"], r"argument --what: invalid choice: 'jacobian'"),
    (["run", "--task", "linreg", "--optimizer", "adagrad", "--schedule", "onecycle[cycle_momentum=true]"], r"--schedule: schedule onecycle\[cycle_momentum=true\] cannot drive adagrad\[eps=1e-10,lr=0.01\]: optimizer must support momentum"),
    (["run", "--optimizer", "lbfgs[history_size=0]"], r"invalid lbfgs hyper-parameter history_size=0: expected a number >= 1$"),
    (["run", "--task", "digits_mlp[test_size=0.99]"], r"batch size 64 is larger than the training set of digits_mlp.* \(17 examples\)$"),
    (["run", "--batch-size", "fool"], r"invalid --batch-size value 'fool': expected ints like 500,1000 or 'full'$"),
    (["run", "--optimizer", "lbfgs[line_search_fn=armijo]"], r"invalid lbfgs hyper-parameter line_search_fn='armijo'; choose from: strong_wolfe, none$"),
    (["run", "--precision", "fp8"], r"--precision: invalid precision 'fp8'; choose from: fp32, tf32, bf16, fp16$"),
    (["run", "--precision", "fp16", "--device", "cpu"], r"--precision: precision 'fp16' needs a CUDA device .*; on the CPU choose from: fp32, bf16$"),
    (["run", "--precision", "tf32", "--device", "cpu"], r"--precision: precision 'tf32' is a CUDA tensor-core mode, not available on cpu; on the CPU choose from: fp32, bf16$"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((["run", "--device", "cuda"], r"device 'cuda' asked for but CUDA is not available here.*choose from: cpu"))


def _short(args: list[str]) -> str:
    text = " ".join(args)
    return text if len(text) <= 80 else text[:80] + "..."


@pytest.mark.parametrize("args, pattern", BAD_INPUTS, ids=[_short(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, pattern, db, tmp_path, capsys):
    import re

    suite = tmp_path / "suite.toml"
    suite.write_text('steps = 5\n[[grid]]\noptimizers = ["adamm"]\n')
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    values = tmp_path / "values.toml"
    values.write_text('steps = 5\noptimizers = ["sgd[maximize=1j]"]\n')
    exit3 = tmp_path / "exit3.py"
    exit3.write_text("import sys\nsys.exit(3)\n")
    args = [a.format(tmp=tmp_path, suite=suite, notes=notes, values=values, exit3=exit3) for a in args]
    if args[0] in ("run", "export", "diagnose", "report") and "--db" not in args:
        args += ["--db", str(db)]
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gradbench: error: "), err
    assert re.search(pattern, err), err
    assert out == ""
    after = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # the database (and everything else) unchanged, nothing new created


def test_bad_input_from_the_installed_command_has_no_traceback(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "gradbench.cli", "run", "--optimizer", "adam[lr=abc]", "--db", str(tmp_path / "x.db")],
        capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stderr and process.stderr.startswith("gradbench: error:")
    assert not (tmp_path / "x.db").exists()


def test_a_sweep_killed_mid_way_resumes_with_nothing_lost_or_duplicated(tmp_path, stored_runs):
    path = tmp_path / "killed.db"
    command = [sys.executable, "-m", "gradbench.cli", "run", "--task", SMALL, "--seeds", "0-5", "--steps", "400", "--db", str(path), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while len(stored_runs(path)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = stored_runs(path)
    assert 2 <= len(before) < 6, "the sweep should have been killed part-way"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"ran {6 - len(before)} " in resumed.stderr and f"{len(before)} already stored" in resumed.stderr
    after = stored_runs(path)
    assert len(after) == 6
    assert {k: after[k] for k in before} == before  # no finished cell was trained again
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    per_run = connection.execute("SELECT run_key, count(*) FROM steps GROUP BY run_key").fetchall()
    connection.close()
    assert sorted(count for _, count in per_run) == [400] * 6  # each run's rows exactly once


@pytest.mark.parametrize(
    "stop, exit_code, words, executor",
    [
        (signal.SIGINT, 130, "interrupted", "serial"),  # Ctrl-C
        (signal.SIGTERM, 143, "terminated (SIGTERM)", "serial"),  # what timeout, kill and job schedulers send
        (signal.SIGTERM, 143, "terminated (SIGTERM)", "process"),
    ],
    ids=["ctrl-c", "sigterm", "sigterm-process-pool"],
)
def test_a_stopped_sweep_keeps_every_finished_cell_and_says_how_to_resume(tmp_path, stored_runs, stop, exit_code, words, executor):
    """The finished cells kept, workers stopped, claims released, the store one file again,
    and a rerun finishes the rest without training a stored cell again."""
    path = tmp_path / "stopped.db"
    command = [sys.executable, "-m", "gradbench.cli", "run", "--task", SMALL, "--seeds", "0-5", "--steps", "400", "--db", str(path), "--no-progress", "--executor", executor]
    if executor == "process":
        command += ["--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(stored_runs(path)) < 1 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == exit_code, err
    assert "Traceback" not in err
    stored = stored_runs(path)
    assert 1 <= len(stored) < 6
    assert f"{words}: {len(stored)} of 6 cells are stored" in err and "run the same command again to resume" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.db"]  # no -wal, -shm or journal left
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    connection.close()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(stored_runs(path)) == 6 and {k: v for k, v in stored_runs(path).items() if k in stored} == stored


def test_a_new_database_in_a_directory_that_cannot_be_written_says_so(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root: permissions do not stop it, so the check is shown the same answer
        real_access = os.access
        monkeypatch.setattr("gradbench.store.database.os.access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    code, out, err = run_cli(capsys, "run", "--task", "linreg", "--steps", "5", "--db", str(locked / "r.db"), "--no-progress")
    assert code == 2 and out == ""
    assert err == f"gradbench: error: cannot create database {str(locked / 'r.db')!r}: directory {str(locked)!r} is not writable; choose another --db path\n"
    assert list(locked.iterdir()) == []


def test_dry_run_lists_cells_and_writes_nothing(db, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--task", SMALL, "--optimizer", "sgd,adam,rmsprop", "--steps", "30", "--db", str(db), "--dry-run")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert sum("stored " in line for line in lines) == 2 and sum("to run " in line for line in lines) == 1
    assert "3 cells, 2 already stored" in err
    code, _, _ = run_cli(capsys, "run", "--steps", "30", "--db", str(tmp_path / "fresh.db"), "--dry-run")
    assert code == 0 and not (tmp_path / "fresh.db").exists()


def test_dry_run_labels_name_every_axis_that_varies(tmp_path, capsys):
    """Issue 12: --batch-size 32,64 and --steps 100,200 gave identical lines."""
    code, out, _ = run_cli(capsys, "run", "--task", "linreg", "--batch-size", "32,64", "--steps", "100,200", "--db", str(tmp_path / "d.db"), "--dry-run")
    assert code == 0
    labels = [line.split("  ", 2)[2].strip() for line in out.splitlines()]
    assert len(set(labels)) == 4
    assert "steps=100, batch_size=32, eval_every=5" in labels  # eval_every follows steps (steps/20), so it varies too
    assert not any("sgd" in label or "linreg" in label or "seed" in label for label in labels)  # nothing that does not vary


def test_export_never_overwrites_the_database_or_a_directory(db, tmp_path, capsys):
    before = db.read_bytes()
    for output, pattern in [(db, "is the database itself"), (tmp_path, "is a directory")]:
        code, out, err = run_cli(capsys, "export", "--db", str(db), "--what", "runs", "--output", str(output))
        assert code == 2 and pattern in err and out == ""
    assert db.read_bytes() == before


def test_failed_cells_are_skipped_unless_retry_failed(tmp_path, capsys):
    from gradbench.tasks import TASKS, Task, register_task

    attempts = []
    build_mnist1d_mlp = TASKS.get("mnist1d_mlp").build

    def flaky(config):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return build_mnist1d_mlp(config)

    knobs = dict(TASKS.get("mnist1d_mlp").knobs, num_samples=500, depth=2, width=16)
    register_task(Task("flaky_mlp", "fails on its first build", flaky, knobs=knobs))
    try:
        path = str(tmp_path / "r.db")
        args = ["run", "--task", "flaky_mlp", "--steps", "10", "--db", path, "--no-progress"]
        code, out, err = run_cli(capsys, *args)
        assert code == 0 and "1 failed" in err and "CUDA out of memory (simulated)" in out
        code, _, err = run_cli(capsys, *args)
        assert code == 0 and "ran 0" in err and "1 of them failed: --retry-failed runs them again" in err
        code, out, err = run_cli(capsys, *args, "--retry-failed")
        assert code == 0 and "ran 1 (1 done)" in err and "1/1 done" in out
        with Store.open(path, readonly=True) as store:
            assert [r["status"] for r in store.runs()] == ["done"]
    finally:
        TASKS.unregister("flaky_mlp")


def test_compile_where_torch_cannot_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """torch.compile's CPU backend builds C++: without a C compiler on PATH, --compile is refused
    before anything is written."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang here
    db = tmp_path / "r.db"
    code, out, err = run_cli(capsys, "run", "--task", SMALL, "--compile", "--steps", "5", "--db", str(db), "--no-progress")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and re.search(r"--compile: compile asked for but no C compiler \(cc, gcc, clang\) is on PATH .*; choose from: false$", err), err
    assert not db.exists()


def test_bf16_compiled_run_is_done_and_export_shows_both_settings(tmp_path, capsys):
    """The issue's 'done means', on a small MLP: a bf16 compiled run finishes done, and export
    and the report name both settings."""
    db = tmp_path / "r.db"
    code, out, err = run_cli(capsys, "run", "--task", SMALL, "--precision", "bf16", "--compile", "--steps", "20", "--db", str(db), "--no-progress")
    assert code == 0, err
    assert "precision bf16; compile True" in out and "record no activation statistics" in out
    code, out, _ = run_cli(capsys, "export", "--what", "runs", "--db", str(db))
    (row,) = csv.DictReader(io.StringIO(out))
    assert (row["status"], row["precision"], row["compile"]) == ("done", "bf16", "1")
    assert float(row["compile_time_s"]) > 0
    env = json.loads(row["env"])
    assert env["autocast_dtype"] == "bfloat16" and env["compiled"] == ["model"] and env["matmul_precision"] == "highest"
