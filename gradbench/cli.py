"""The ``gradbench`` command: run, report, plot, diagnose, export, list. Thin: it parses, then
calls the modules.

Every bad input (unknown name, malformed value or file, missing CUDA, a file that is not a
gradbench database) ends with one line on stderr naming the bad value and the valid choices,
exit code 2, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gradbench.axes.specs import (  # torch-free: --help and list start at once
    shown,
    split_top_level,
)

if TYPE_CHECKING:  # imported lazily at run time: 'gradbench list' should not wait for torch
    from gradbench.monitor.diagnosis import Thresholds, Verdict
    from gradbench.store.database import Store

__all__ = ["main"]

EXIT_USAGE = 2
LISTS = ("tasks", "optimizers", "schedules", "activations", "clips", "inits")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``kill`` and job schedulers send), handled as Ctrl-C is: the
    sweep stops, workers are stopped, claims released, the store closed whole."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Raise ``Terminated`` in the main thread on SIGTERM, once (a second one during the clean-up
    is ignored: the clean-up is what it would cut short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:  # None: a handler installed outside Python, which cannot be put back; the default then
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _stopped(interrupt: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"


def _exit_code(interrupt: KeyboardInterrupt) -> int:
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _comma_list(text: str) -> list[str]:
    try:
        items = split_top_level(text)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if any(not item for item in items):
        raise UsageError(f"empty item in comma list {shown(text)}")
    return items


def _numbers(flag: str, text: str, kind: type, allow_ranges: bool = False, max_count: int | None = None, words: tuple[str, ...] = ()) -> list[Any]:
    """The numbers of a comma list (``0,1,2``; with ``allow_ranges`` also ``0-4``), at most
    ``max_count`` of them, counted before a range is expanded; ``words`` pass as they are."""
    parsed: list[Any] = []  # numbers, and (low, high) for ranges
    for item in _comma_list(text):
        try:
            if item in words:
                parsed.append(item)
            elif allow_ranges and "-" in item[1:]:
                low, high = (int(part) for part in item.split("-", 1))
                if high < low:
                    raise ValueError
                parsed.append((low, high))
            else:
                parsed.append(kind(item))
        except ValueError:
            example = "0,1,2 or 0-4" if allow_ranges else ("1e-3,0.01" if kind is float else "500,1000")
            extra = "".join(f" or {word!r}" for word in words)
            raise UsageError(f"invalid {flag} value {shown(item)}: expected {kind.__name__}s like {example}{extra}") from None
    count = sum(item[1] - item[0] + 1 if isinstance(item, tuple) else 1 for item in parsed)
    if max_count is not None and count > max_count:
        raise UsageError(f"{flag} {shown(text, 40)} gives {count} values, more cells than the limit of {max_count}; raise it with --max-cells {count}")
    values: list[Any] = []
    for item in parsed:
        if isinstance(item, tuple):
            values.extend(range(item[0], item[1] + 1))
        else:
            values.append(item)
    return values


def _build_parser() -> _Parser:
    parser = _Parser(prog="gradbench", description="Benchmark optimizers, activations, clipping and initialisation on deep networks.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="run a suite (default: the built-in one) and print the comparison table")
    run.add_argument("suite", nargs="?", help="suite file (TOML); omitted: the built-in default suite")
    axes = run.add_argument_group(
        "grid axes (comma lists). With a suite file each replaces its axis in every grid; without one "
        "they define a single grid, their product, other axes taking their defaults"
    )
    axes.add_argument("--task", help="tasks, e.g. mnist1d_mlp[depth=20,width=128],linreg")
    axes.add_argument("--optimizer", help="optimizers, e.g. sgd,adam[lr=1e-3,betas=(0.9,0.99)]")
    axes.add_argument("--activation", help="activations, e.g. sigmoid,relu")
    axes.add_argument("--clip", help="clipping, e.g. none,norm:1.0,value:0.5")
    axes.add_argument("--init", help="initialisers, e.g. standard,kaiming_normal")
    axes.add_argument("--lr", help="learning rates for every optimizer, e.g. 0.1,0.01")
    axes.add_argument("--schedule", help="learning-rate schedules, e.g. constant,cosine,step[gamma=0.5],inverse_sqrt (see 'gradbench list schedules')")
    axes.add_argument("--seeds", help="seeds, e.g. 0,1,2 or 0-4")
    axes.add_argument("--steps", help="optimizer steps per run, e.g. 1000")
    axes.add_argument("--batch-size", help="mini-batch sizes, or full (the whole training set every step, for any optimizer); full-batch optimizers such as gd ignore them")
    settings = run.add_argument_group("settings")
    settings.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    settings.add_argument("--threads", type=int, help="torch CPU threads per run (default: 1)")
    settings.add_argument("--eval-every", type=int, help="steps between test evaluations (default: steps/20)")
    settings.add_argument("--record-every", type=int, help="steps between records of per-layer gradient norms (default: 10)")
    settings.add_argument(
        "--detail-every", type=int,
        help="steps between records of weight norms, update ratios and activation statistics: a multiple of --record-every, 0 for none (default: 10 x --record-every)",
    )
    settings.add_argument(
        "--validation", type=float,
        help="fraction of each training set held out as a validation split, never trained on, for 'gradbench report --tuned' (default: 0, none)",
    )
    settings.add_argument(
        "--jacobian-every", type=int,
        help="steps between the singular values of the layer-to-layer Jacobians on a probe batch (Glorot & Bengio 4.2), also at step 0 and the end; 0 for none (default)",
    )
    settings.add_argument(
        "--precision",
        help="fp32 (default), tf32 (CUDA: TensorFloat-32 matrix products), bf16 (autocast to bfloat16; CPU or CUDA) or fp16 (CUDA: autocast to float16 with a loss scaler)",
    )
    settings.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None,
        help="train with torch.compile'd steps, compiled before the first timed step (default: no; activation statistics are off when compiled)",
    )
    settings.add_argument("--max-cells", type=int, help="refuse a grid of more cells than this, counted before any is built (default: 100000)")
    settings.add_argument("--db", default=None, help="results database (default: gradbench.db)")
    settings.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import a module or .py file that registers tasks, optimizers, ... (repeatable); workers import it too. Installed packages' 'gradbench.plugins' entry points load without it")
    settings.add_argument("--data-dir", help="where MNIST, Fashion-MNIST and CIFAR-10 are read from, in torchvision's layout (default: $GRADBENCH_DATA, else ~/.cache/gradbench/data)")
    settings.add_argument("--download", action="store_true", help="download a real dataset that is missing from the data directory (default: never download)")
    settings.add_argument(
        "--tensorboard", metavar="DIR",
        help="write each run's TensorBoard event files (losses, evaluations, per-layer gradient norms) into a folder of DIR as the run is "
        "stored, for 'tensorboard --logdir DIR'; needs pip install 'gradbench[tensorboard]'",
    )
    settings.add_argument("--format", choices=("md", "csv"), default="md", help="format of the final table")
    settings.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars (default: on a terminal)")
    settings.add_argument("--retry-failed", action="store_true", help="run again the cells stored as failed (by default every stored cell is skipped)")
    settings.add_argument("--dry-run", action="store_true", help="list the cells (and whether each is stored) without running")
    _executor_options(run)

    report = commands.add_parser(
        "report",
        help="comparison tables from the store: the flat table (default), pivot tables (--rows/--columns/--metric, LaTeX), "
        "performance profiles, or a one-page HTML report",
    )
    report.add_argument("--db", default=None, help="results database (default: gradbench.db)")
    report.add_argument(
        "--format", choices=("md", "csv", "latex", "html"), default="md",
        help="md and csv: the flat table unless a pivot is asked for; latex: pivot tables (booktabs); html: a self-contained page "
        "with every table and figure (write it with -o)",
    )
    report.add_argument("--rows", help="pivot row axes, comma list (default: optimizer); any run axis: optimizer, lr, schedule, activation, init, clip, batch_size, steps, a task knob such as depth, width, norm, or a setting: validation, device, threads, eval_every, record_every, detail_every")
    report.add_argument("--columns", help="pivot column axes, comma list (default: activation)")
    report.add_argument("--split", help="pivot: axes that get a table per value, comma list (default: none; every other varying axis joins the row label)")
    report.add_argument("--metric", help="the pivot's metrics, comma list, a table per task and metric (default: train_loss): train_loss, test_loss, test_accuracy, validation_loss, validation_accuracy, steps_to_target, time_to_target, step_time (wall), step_cpu_time (CPU runs), grad_ratio, state_bytes (optimizer state), peak_memory (CUDA runs), verdict")
    report.add_argument("--tuned", action="store_true", help="keep each configuration's best learning rate, chosen on the validation split (runs made with --validation)")
    report.add_argument("--tune-on", default=None, help="what --tuned chooses on: validation_loss (default), validation_accuracy, or train_loss (for runs without a validation split; labelled so)")
    report.add_argument("--profiles", action="store_true", help="performance profiles (Dolan & More) on steps and time to target across problems, instead of tables; solvers by --rows (no --metric or --columns)")
    _where_option(report)
    report.add_argument("--output", "-o", help="write to this file instead of stdout")
    _threshold_option(report)

    plot = commands.add_parser("plot", help="figures from the store (PNG, PDF or SVG by the output's suffix)")
    plot.add_argument("kind", help="curves, heatmap, depth, clip or profile")
    plot.add_argument("run", nargs="?", help="heatmap: a run key or a unique prefix of one (or select one run with --where)")
    plot.add_argument("--db", default=None, help="results database (default: gradbench.db)")
    plot.add_argument("--output", "-o", required=True, help="the figure file: .png, .pdf or .svg")
    plot.add_argument("--y", default=None, help="curves: train_loss (default), test_loss, test_accuracy, validation_loss, validation_accuracy, loss (every step), or lr (the learning rate at each evaluation)")
    plot.add_argument("--x", default=None, help="curves: step (default) or time (seconds of training steps, mean over seeds)")
    plot.add_argument("--by", default=None, help="depth and curves: the axes whose values name the lines, comma list (default: every axis that varies)")
    plot.add_argument("--measure", default=None, help="profile: steps_to_target (default) or time_to_target")
    plot.add_argument("--tuned", action="store_true", help="curves, depth, clip, profile: only each configuration's best learning rate (see report --tuned)")
    plot.add_argument("--tune-on", default=None, help="what --tuned chooses on (default: validation_loss)")
    _where_option(plot)

    diagnose = commands.add_parser("diagnose", help="gradient-health verdicts of stored runs, in plain words")
    diagnose.add_argument("run", nargs="?", help="a run key or a unique prefix of one (default: every run)")
    diagnose.add_argument("--db", default=None, help="results database (default: gradbench.db)")
    _threshold_option(diagnose)

    export = commands.add_parser("export", help="long-format rows for analysis elsewhere")
    export.add_argument("--db", default=None, help="results database (default: gradbench.db)")
    export.add_argument(
        "--what", choices=("runs", "evaluations", "steps", "layers", "activations", "jacobians"), required=True,
        help="runs: one row per run; evaluations: one row per run and evaluation (the curves: step, training time, train, test and validation metrics, learning rate); steps: one row per run and step (mini-batch loss, step times); layers: run key, step, layer index, layer name, gradient norm, then the gradient norm after "
        "clipping, weight norm, update ratio, the weight and bias parts of the gradient and the back-propagated gradient at the output; activations: one row per run, step and activation site; jacobians: the layer Jacobians' singular values (runs made with --jacobian-every)",
    )
    export.add_argument("--format", choices=("csv", "json", "parquet"), default="csv", help="csv (default), json, or parquet (needs pyarrow and --output)")
    export.add_argument("--output", "-o", help="write to this file instead of stdout")

    reproduce = commands.add_parser(
        "reproduce",
        help="re-measure a paper's published results (a shipped suite) and print published | measured | band | verdict; exit 0 when every number is in its band, 1 when not",
    )
    reproduce.add_argument("name", nargs="?", help="the reproduction (see --list)")
    reproduce.add_argument("--list", action="store_true", help="list the reproductions, their papers and their sizes")
    size = reproduce.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the paper's own size, where one GPU can run it (default: minutes on two CPU cores, smaller where needed)")
    size.add_argument("--smoke", action="store_true", help="a few steps and one seed: checks the plumbing in seconds; its verdicts mean nothing")
    reproduce.add_argument("--no-run", action="store_true", help="compare what is stored already, running nothing (missing runs are reported as missing)")
    reproduce.add_argument("--db", default=None, help="results database (default: gradbench.db); a reproduction sees only its own suite's runs in it")
    reproduce.add_argument("--output", "-o", default="reproductions", help="folder for NAME.md (the table) and NAME.png (the figure) (default: reproductions)")
    reproduce.add_argument("--device", help="cpu, cuda or cuda:N for every run (default: the suite's, cpu); part of each run's key, so --no-run needs the same")
    reproduce.add_argument("--threads", type=int, help="torch CPU threads per run (default: the suite's, 1); part of each run's key, so --no-run needs the same")
    reproduce.add_argument("--data-dir", help="where MNIST, Fashion-MNIST and CIFAR-10 are read from (--full sizes that need them)")
    reproduce.add_argument("--download", action="store_true", help="download a real dataset that is missing from the data directory")
    reproduce.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars (default: on a terminal)")
    reproduce.add_argument("--retry-failed", action="store_true", help="run again the cells stored as failed")
    _executor_options(reproduce)

    listing = commands.add_parser("list", help="list what can be benchmarked")
    listing.add_argument("what", nargs="?", choices=LISTS, help="one kind (default: all)")
    listing.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import a module or .py file that registers more (repeatable)")
    return parser


def _executor_options(parser: argparse.ArgumentParser) -> None:
    parallel = parser.add_argument_group("where cells run")
    parallel.add_argument("--executor", default="serial", help="serial (one after another, here), process (a pool of worker processes on this machine) or ray (Ray tasks, on this machine or a cluster); default: serial")
    parallel.add_argument("--workers", type=int, help="process executor: worker processes (default: one per visible GPU for CUDA cells, else CPU cores // --threads)")
    parallel.add_argument("--ray-address", help="ray executor: a running cluster, 'auto' or HOST:PORT (default: start a local Ray)")
    parallel.add_argument("--cpus-per-run", type=float, help="ray executor: CPUs each run reserves (default: its thread count)")
    parallel.add_argument("--gpus-per-run", type=float, help="ray executor: GPUs each run reserves, fractions allowed (default: 1 for CUDA cells, else 0)")


def _where_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--where", action="append", default=[], metavar="AXIS=VALUE[,VALUE]",
        help="only the runs whose AXIS has one of the values (repeatable), e.g. --where task=linreg --where optimizer=sgd,adam",
    )


def _where(args: argparse.Namespace) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for item in args.where:
        name, sign, values = item.partition("=")
        if not sign or not name.strip() or not values.strip():
            raise UsageError(f"invalid --where {shown(item)}: expected AXIS=VALUE[,VALUE], e.g. optimizer=adam")
        where.setdefault(name.strip(), []).extend(_comma_list(values))
    return where


def _threshold_option(parser: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from gradbench.monitor.diagnosis import Thresholds

    names = ", ".join(f"{item.name}={item.default:g}" for item in fields(Thresholds))
    parser.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE", help=f"override a verdict threshold (repeatable); defaults: {names}")


def _db_path(args: argparse.Namespace) -> Path:
    from gradbench.store.database import DEFAULT_DB

    return Path(args.db if args.db is not None else DEFAULT_DB)


def _overrides(args: argparse.Namespace, max_cells: int) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for flag, key in (("task", "tasks"), ("optimizer", "optimizers"), ("schedule", "schedules"), ("activation", "activations"), ("clip", "clips"), ("init", "inits")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = _comma_list(value)
    if args.lr is not None:
        overrides["lrs"] = _numbers("--lr", args.lr, float)
    if args.seeds is not None:
        overrides["seeds"] = _numbers("--seeds", args.seeds, int, allow_ranges=True, max_count=max_cells)
    if args.steps is not None:
        overrides["steps"] = _numbers("--steps", args.steps, int)
    if args.batch_size is not None:
        overrides["batch_sizes"] = _numbers("--batch-size", args.batch_size, int, words=("full",))
    for flag in ("device", "threads", "eval_every", "record_every", "detail_every", "validation", "jacobian_every", "precision", "compile"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    return overrides


def _max_cells(args: argparse.Namespace) -> int:
    from gradbench.grid.expansion import MAX_CELLS

    if args.max_cells is None:
        return MAX_CELLS
    if args.max_cells < 1:
        raise UsageError(f"invalid --max-cells {args.max_cells}: give a number of cells >= 1")
    return int(args.max_cells)


def _run(args: argparse.Namespace) -> int:
    from gradbench.grid.expansion import expand
    from gradbench.grid.suite import AXES, Suite, default_suite, load_suite
    from gradbench.report.flat import render
    from gradbench.store.database import Store

    # Everything is validated before the store is opened, so bad input writes nothing.
    plugins = _load_plugins(args)
    executor = _make_executor(args)
    max_cells = _max_cells(args)
    overrides = _overrides(args, max_cells)
    if args.suite:
        suite = load_suite(args.suite)  # flags replace their axis in every grid of the file
    elif set(overrides) & set(AXES):
        suite = Suite(name="command line")  # axis flags alone: one grid, their product
    else:
        suite = default_suite()  # nothing but settings: the built-in suite
    # Ray runs cells on the cluster's nodes: a driver without a GPU may send CUDA cells there.
    cells = expand(suite.with_overrides(overrides), local_devices=args.executor != "ray", max_cells=max_cells)
    db = _db_path(args)
    data_options = _data_options(args)
    tensorboard = _tensorboard_writer(args)  # before anything runs: a sweep that asks for events never runs without them
    if args.dry_run:
        stored: set[str] = set()
        running: dict[str, str] = {}
        if db.exists():
            with Store.open(db, readonly=True) as store:
                stored, running = store.finished_keys(), store.live_claims()
        for cell, label in zip(cells, _labels([cell.config() for cell in cells])):
            state = "stored " if cell.key in stored else ("running" if cell.key in running else "to run ")
            print(f"{cell.key}  {state}  {label}" + (f"  ({running[cell.key]})" if state == "running" else ""))
        busy = sum(c.key in running and c.key not in stored for c in cells)
        print(f"{len(cells)} cells, {sum(c.key in stored for c in cells)} already stored" + (f", {busy} running now" if busy else ""), file=sys.stderr)
        return 0
    _check_datasets(cells, data_options, args)  # before the store is opened: a missing one writes nothing
    executor.check(cells)  # can these cells run there (Ray reached, its resources)? Before the store too
    started = time.perf_counter()
    try:
        with Store.open(db, create=True) as store:
            summary = _sweep(cells, store, db, executor, args, plugins, data_options, on_result=tensorboard)
            if isinstance(summary, int):
                return summary
            runs = store.runs([c.key for c in cells])
            print(render(runs, args.format, _verdict_names(store, runs)), end="")
            elsewhere = store.live_claims()
    finally:
        executor.close()
    statuses = ", ".join(f"{count} {status}" for status, count in sorted(summary.statuses.items())) or "nothing new"
    failed_note = f" ({summary.skipped_failed} of them failed: --retry-failed runs them again)" if summary.skipped_failed else ""
    print(
        f"suite {suite.name!r}: {summary.total} cells, ran {summary.ran} ({statuses}), {summary.skipped} already stored{failed_note}; "
        f"results in {db} ({time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    if summary.running_elsewhere:
        owners = sorted({elsewhere[key] for key in summary.running_elsewhere if key in elsewhere})
        print(
            f"{len(summary.running_elsewhere)} cells were being run by another gradbench ({', '.join(owners) or 'since finished'}): "
            "their results are stored by it; 'gradbench report' shows everything once it ends",
            file=sys.stderr,
        )
    return 0


def _sweep(cells: Sequence[Any], store: Store, db: Path, executor: Any, args: argparse.Namespace, plugins: Sequence[str], data_options: Any, on_result: Any = None) -> Any:
    """Run the cells not stored yet into ``store``; the sweep's summary, or the exit code of an
    interrupted sweep (what finished is kept, and the message says how to resume)."""
    from gradbench.run.context import RunContext
    from gradbench.sweep.driver import run_sweep

    try:
        job = RunContext(data_options=data_options, plugins=tuple(plugins))
        return run_sweep(cells, store, executor=executor, progress=args.progress, retry_failed=args.retry_failed, job=job, on_result=on_result, command=shlex.join(["gradbench", *args.argv]))
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (Terminated)
        kept = len(store.finished_keys() & {c.key for c in cells})
        print(f"\n{_stopped(interrupt)}: {kept} of {len(cells)} cells are stored in {db}; run the same command again to resume", file=sys.stderr)
        return _exit_code(interrupt)


def _tensorboard_writer(args: argparse.Namespace) -> Any:
    """The event-file writer --tensorboard asks for, or ``None``; checked, nothing created yet."""
    if args.tensorboard is None:
        return None
    from gradbench.sweep.tensorboard import TensorBoardUnavailable, TensorBoardWriter

    try:
        return TensorBoardWriter(Path(args.tensorboard).expanduser())
    except TensorBoardUnavailable as error:
        raise UsageError(str(error)) from None


def _load_plugins(args: argparse.Namespace) -> list[str]:
    """The installed plugins' entry points (all of them, before anything is checked: the
    workers load them too), then the --plugin modules; returns the latter for the workers."""
    from gradbench.plugins import load_entry_points, load_plugins

    load_entry_points()  # PluginError names the entry point: one line, exit 2

    # A .py file travels to the workers as an absolute path: theirs is not the driver's directory.
    plugins = [
        str(Path(item).expanduser().resolve()) if item.endswith(".py") and Path(item).expanduser().is_file() else item
        for text in args.plugin
        for item in _comma_list(text)
    ]
    load_plugins(plugins)  # PluginError is a ValueError: one line, exit 2
    return plugins


def _make_executor(args: argparse.Namespace) -> Any:
    """The executor the flags ask for, its options checked (one line, exit 2) before anything
    runs, also for --dry-run, which runs nothing; nothing is started yet."""
    from gradbench.sweep.executor_names import EXECUTORS, make_executor

    name = args.executor
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {shown(name)}; choose from: {', '.join(EXECUTORS)}")
    flags = {"process": {"workers": "--workers"}, "ray": {"ray_address": "--ray-address", "cpus_per_run": "--cpus-per-run", "gpus_per_run": "--gpus-per-run"}}
    for owner, names in flags.items():
        for attribute, flag in names.items():
            if getattr(args, attribute) is not None and name != owner:
                raise UsageError(f"{flag} applies to --executor {owner} only (got --executor {name})")
    if name == "process":
        return make_executor(name, workers=args.workers)
    if name == "ray":
        return make_executor(name, address=args.ray_address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    return make_executor(name)


def _data_options(args: argparse.Namespace) -> Any:
    from gradbench.tasks.image_datasets import DataOptions, default_data_dir

    root = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    return DataOptions(root, download=args.download)


def _check_datasets(cells: Sequence[Any], data_options: Any, args: argparse.Namespace) -> None:
    """Load (or, with --download, fetch) every real dataset the cells need, before any run.

    Raises:
        UsageError: naming the dataset, the directory and the exact command that fetches it.
    """
    from gradbench.tasks import TASKS
    from gradbench.tasks.image_datasets import DatasetUnavailable, load_image_dataset

    for name in sorted({dataset for cell in cells for dataset in TASKS.get(cell.task).datasets}):
        try:
            load_image_dataset(name, data_options)  # kept in memory: the runs reuse it
        except DatasetUnavailable as error:
            if not data_options.download:
                command = shlex.join(["gradbench", *args.argv, "--download"])
                error = error.with_fetch_hint(f"fetch it with: {command}")
            raise UsageError(str(error)) from None


def _verdicts(store: Store, runs: Sequence[Mapping[str, Any]], thresholds: Thresholds | None = None) -> dict[str, list[Verdict]]:
    """Each done or diverged run's verdicts, by key."""
    from gradbench.monitor.diagnosis import diagnose

    return {run["key"]: diagnose(store.health(run), thresholds) for run in runs if run["status"] != "failed"}


def _verdict_names(store: Store, runs: Sequence[Mapping[str, Any]], thresholds: Thresholds | None = None) -> dict[str, list[str]]:
    return {key: [verdict.name for verdict in verdicts] for key, verdicts in _verdicts(store, runs, thresholds).items()}


def _report(args: argparse.Namespace) -> int:
    from gradbench.monitor.diagnosis import parse_thresholds
    from gradbench.report.flat import render
    from gradbench.report.pivot import METRICS, build_pivots, select_runs
    from gradbench.report.profiles import PROFILE_MEASURES, performance_profiles, profile_csv, profile_text
    from gradbench.report.tables import render_pivots
    from gradbench.report.tuning import tune
    from gradbench.store.database import Store

    thresholds = parse_thresholds(args.threshold)
    rows = _comma_list(args.rows) if args.rows is not None else ["optimizer"]
    columns = _comma_list(args.columns) if args.columns is not None else ["activation"]
    split = _comma_list(args.split) if args.split is not None else []
    metrics = _comma_list(args.metric) if args.metric is not None else None
    for name in metrics or []:
        if name not in METRICS:
            raise UsageError(f"unknown --metric {name!r}; choose from: {', '.join(METRICS)}")
    if args.tune_on is not None and not args.tuned:
        raise UsageError("--tune-on applies with --tuned; add --tuned")
    if args.tuned and "lr" in (*rows, *columns):
        raise UsageError("--tuned chooses the learning rate, so lr cannot be a --rows or --columns axis")
    if args.profiles and args.format == "latex":
        raise UsageError("--profiles prints as md, csv or html; choose one of them with --format")
    for flag, value in (("--metric", args.metric), ("--columns", args.columns), ("--split", args.split)):
        if args.profiles and value is not None:  # profiles measure steps and time to target, solvers by --rows only
            raise UsageError(f"--profiles takes no {flag} ({value!r}): it profiles steps and time to target, a solver named by --rows; drop {flag} or --profiles")
    pivot = args.format in ("latex", "html") or args.tuned or any(v is not None for v in (args.rows, args.columns, args.metric, args.split))
    db = _db_path(args)
    output = Path(args.output) if args.output else None
    if output is not None:
        _check_output(output, db)
    with Store.open(db, readonly=True) as store:
        runs = select_runs(store.runs(), _where(args))
        if not runs:
            raise UsageError(f"no runs in {str(db)!r}" + (" match --where" if args.where else "; run 'gradbench run' first"))
        note, lrs = None, None
        if args.tuned:
            tuned = tune(runs, args.tune_on or "validation_loss")
            runs, lrs, note = tuned.runs, tuned.lrs, tuned.note
        if args.format == "html":
            from gradbench.report.html_page import html_report

            verdicts = _verdict_names(store, runs, thresholds)
            text = html_report(store, runs, rows=rows, columns=columns, metrics=metrics, verdicts=verdicts, lrs=lrs, note=note, split=split)
        elif args.profiles:
            profiles = [performance_profiles(runs, measure, rows) for measure in PROFILE_MEASURES]
            text = "\n".join(profile_text(p) for p in profiles) if args.format == "md" else "".join(profile_csv(p, header=i == 0) for i, p in enumerate(profiles))
        elif pivot:
            texts = []
            for index, metric in enumerate(metrics or ["train_loss"]):
                pivot_verdicts = _verdict_names(store, runs, thresholds) if metric == "verdict" else None
                report = build_pivots(runs, rows, columns, metric, pivot_verdicts, lrs, split)
                report.note = note
                texts.append(render_pivots(report, args.format))
            text = _joined(texts, args.format)
        else:
            text = render(runs, args.format, _verdict_names(store, runs, thresholds))
    if output is not None:
        _write_atomically(output, text)
    else:
        sys.stdout.write(text)
    return 0


def _joined(texts: Sequence[str], fmt: str) -> str:
    """The reports of several metrics as one text: a CSV keeps one header (its ``metric``
    column tells them apart), LaTeX one preamble comment."""
    if fmt == "csv":
        return texts[0] + "".join(text.split("\n", 1)[1] for text in texts[1:])
    if fmt == "latex":
        return texts[0] + "".join("\n".join(line for line in text.splitlines() if not line.startswith("% ")) + "\n" for text in texts[1:])
    return "\n".join(texts)


_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _plot(args: argparse.Namespace) -> int:
    from gradbench.report import plots
    from gradbench.report.pivot import select_runs
    from gradbench.report.tuning import tune
    from gradbench.store.database import Store

    if args.kind not in plots.PLOTS:
        raise UsageError(f"unknown plot {args.kind!r}; choose from: {', '.join(plots.PLOTS)}")
    output = Path(args.output)
    if output.suffix.lower() not in _PLOT_SUFFIXES:
        raise UsageError(f"cannot tell the figure format of --output {str(output)!r}: end it in {', '.join(_PLOT_SUFFIXES)}")
    if args.run is not None and args.kind != "heatmap":
        raise UsageError(f"plot {args.kind} takes no run key; select runs with --where")
    if args.kind == "heatmap" and args.run is not None and args.where:
        raise UsageError("plot heatmap takes a run key or --where, not both")
    if args.kind == "heatmap" and args.run is None and not args.where:
        raise UsageError("plot heatmap draws one run: give its key (or a unique prefix), or --where that selects one run")
    for flag, value, kinds in (("--y", args.y, ("curves",)), ("--x", args.x, ("curves",)), ("--by", args.by, ("curves", "depth", "clip")), ("--measure", args.measure, ("profile",))):
        if value is not None and args.kind not in kinds:
            raise UsageError(f"{flag} applies to plot {' and '.join(kinds)}, not {args.kind}")
    if args.x is not None and args.x not in plots.X_AXES:
        raise UsageError(f"unknown --x {args.x!r}; choose from: {', '.join(plots.X_AXES)}")
    if args.tune_on is not None and not args.tuned:
        raise UsageError("--tune-on applies with --tuned; add --tuned")
    if args.tuned and args.kind == "heatmap":
        raise UsageError("--tuned applies to plot curves, depth, clip and profile, not heatmap (one run)")
    db = _db_path(args)
    _check_output(output, db)
    by = _comma_list(args.by) if args.by is not None else None
    with Store.open(db, readonly=True) as store:
        if args.kind == "heatmap" and args.run is not None:
            figure = plots.grad_heatmap(store, store.resolve_key(args.run))
        elif args.kind == "heatmap":
            chosen = select_runs(store.runs(), _where(args))
            if len(chosen) != 1:
                raise UsageError(f"plot heatmap draws one run, and --where selects {len(chosen)}: add --where conditions (seed=0, clip=none, ...) or give a run key")
            figure = plots.grad_heatmap(store, chosen[0]["key"])
        else:
            runs = select_runs(store.runs(), _where(args))
            if not runs:
                raise UsageError(f"no runs in {str(db)!r}" + (" match --where" if args.where else "; run 'gradbench run' first"))
            if args.tuned:
                runs = tune(runs, args.tune_on or "validation_loss").runs
            if args.kind == "curves":
                figure = plots.training_curves(store, runs, y=args.y or "train_loss", by=by, x=args.x or "step")
            elif args.kind == "depth":
                figure = plots.depth_profile(store, runs, by=by)
            elif args.kind == "clip":
                figure = plots.clip_rate(store, runs, by=by)
            else:
                from gradbench.report.profiles import performance_profiles

                figure = plots.profile_plot(performance_profiles(runs, args.measure or "steps_to_target"))
    plots.save_figure(figure, output)
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from gradbench.monitor.diagnosis import parse_thresholds
    from gradbench.store.database import Store

    thresholds = parse_thresholds(args.threshold)
    with Store.open(_db_path(args), readonly=True) as store:
        runs = store.runs([store.resolve_key(args.run)] if args.run is not None else None)
        if not runs:
            print("no runs stored yet")
            return 0
        verdicts = _verdicts(store, runs, thresholds)
        labels = _labels([json.loads(run["config"]) for run in runs])
        for index, (run, label) in enumerate(zip(runs, labels)):
            found = verdicts.get(run["key"], [])
            names = ", ".join(verdict.name for verdict in found) or ("failed" if run["status"] == "failed" else "nothing recorded")
            print(("\n" if index else "") + f"{run['key']}  {label}: {names}")
            if run["status"] == "failed":
                print(f"  failed: {run['error']}")
            for verdict in found:
                print(f"  {verdict.name}: {verdict.message}")
            if json.loads(run["config"]).get("compile"):
                print("  activation statistics: not recorded (compiled: torch.compile does not follow the monitor's forward hooks), so no dead_units or saturated verdict")
            if run.get("skipped_steps"):
                skipped = store.skipped_steps(run["key"])
                shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
                print(f"  loss scaler: skipped {run['skipped_steps']} steps for non-finite scaled gradients (steps {shown}); not divergence")
    return 0


def _labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each configuration named by the axes that vary among them (``gradbench.grid.labels``,
    as tables and figures name them); a lone one by its task, optimizer, lr, ... and seed."""
    from gradbench.grid.labels import varying_labels

    return varying_labels(configs) if configs else []


def _check_output(path: Path, db: Path) -> None:
    """Refuse an output path that would destroy something: the database, a directory, a file
    that is not a regular file."""
    if not path.parent.is_dir():
        raise UsageError(f"cannot write --output {str(path)!r}: directory {str(path.parent)!r} does not exist")
    if path.exists():
        if path.is_dir() or not path.is_file():
            raise UsageError(f"cannot write --output {str(path)!r}: it is {'a directory' if path.is_dir() else 'not a regular file'}")
        if db.exists() and os.path.samefile(path, db):
            raise UsageError(f"--output {str(path)!r} is the database itself; choose another file")
        with path.open("rb") as existing:
            if existing.read(16) == b"SQLite format 3\x00":
                raise UsageError(f"--output {str(path)!r} is an SQLite database; choose another file")


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (``gradbench.report.files``)."""
    from gradbench.report.files import write_atomically

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8", newline="") as output:
            output.write(text)

    write_atomically(path, write)


def _export(args: argparse.Namespace) -> int:
    from gradbench.report.export import export, require_pyarrow, write_parquet
    from gradbench.store.database import Store

    db = _db_path(args)
    if args.format == "parquet":
        if not args.output:
            raise UsageError("--format parquet writes a binary file: give it with --output FILE.parquet")
        require_pyarrow()
    if args.output:
        _check_output(Path(args.output), db)
    with Store.open(db, readonly=True) as store:
        if args.format == "parquet":
            from gradbench.report.files import write_atomically

            write_atomically(Path(args.output), lambda temporary: write_parquet(store, args.what, temporary))
            return 0
        text = export(store, args.what, args.format)
    if args.output:
        _write_atomically(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """Run a reproduction's suite (what is not stored yet), compare each published number with
    the measurement, print and write the table and the figure; 0 when every number is within its
    band, 1 when not."""
    from gradbench.reproduce.catalog import cells_of, get, names

    if args.list:  # torch-free: the catalogue is data
        if args.name:
            raise UsageError(f"--list takes no reproduction name (got {shown(args.name)})")
        for flag in ("full", "smoke", "no_run"):
            if getattr(args, flag):
                raise UsageError(f"--list takes no --{flag.replace('_', '-')}: it lists every reproduction and its sizes")
        for name in names():
            reproduction = get(name)
            sizes = f"about {reproduction.minutes:g} min on 2 CPU cores with --executor process" + ("; --full: " + reproduction.full_note if reproduction.full else "")
            print(f"  {name:<16}{reproduction.title} ({sizes})")
        return 0
    if not args.name:
        raise UsageError(f"name a reproduction; choose from: {', '.join(names())} (gradbench reproduce --list describes them)")
    from gradbench.reproduce.comparison import compare, exit_code, render
    from gradbench.reproduce.evidence import Evidence
    from gradbench.store.database import Store

    reproduction = get(args.name)
    size = "full" if args.full else "smoke" if args.smoke else "default"
    executor = _make_executor(args)
    cells = cells_of(reproduction, size, device=args.device, threads=args.threads, local_devices=args.executor != "ray")
    db = _db_path(args)
    output = Path(args.output).expanduser()
    stem = reproduction.name + ("" if size == "default" else f".{size}")
    table_path, figure_path = output / f"{stem}.md", output / f"{stem}.png"
    existing = next(folder for folder in (output, *output.parents) if folder.exists())  # checked now, created after the sweep
    if not existing.is_dir():
        raise UsageError(f"cannot write into --output {shown(str(output))}: {shown(str(existing))} is not a directory")
    for path in (table_path, figure_path):
        if path.exists() and not path.is_file():
            raise UsageError(f"cannot write {shown(str(path))}: it is not a regular file")
    if args.no_run:
        if not db.exists():
            raise UsageError(f"no database {shown(str(db))}: run 'gradbench reproduce {reproduction.name}' first, or give --db")
    else:
        data_options = _data_options(args)
        _check_datasets(cells, data_options, args)
        executor.check(cells)
        started = time.perf_counter()
        try:
            with Store.open(db, create=True) as store:
                summary = _sweep(cells, store, db, executor, args, [], data_options)
                if isinstance(summary, int):
                    return summary
        finally:
            executor.close()
        print(f"reproduction {reproduction.name!r} ({size}): {summary.total} cells, ran {summary.ran}, {summary.skipped} already stored; results in {db} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        if summary.running_elsewhere:
            print(f"{len(summary.running_elsewhere)} cells were being run by another gradbench: their claims read as missing until it stores them; run the same command again then", file=sys.stderr)
    try:
        with Store.open(db, readonly=True) as store:
            evidence = Evidence.of_cells(store, cells)
            outcomes = compare(reproduction, evidence)
            text = render(reproduction, outcomes, size)
            figure, figure_note = None, ""
            if reproduction.figure is not None:
                try:
                    figure = reproduction.figure(evidence)
                except Exception as error:  # MissingRuns, or a figure's bug: the table is written all the same
                    figure_note = f"figure not drawn: {error}"
    except KeyboardInterrupt as interrupt:  # while comparing: the runs are stored, nothing else is written
        print(f"\n{_stopped(interrupt)} while comparing: the runs are in {db}; 'gradbench reproduce {reproduction.name} --no-run' compares them", file=sys.stderr)
        return _exit_code(interrupt)
    output.mkdir(parents=True, exist_ok=True)
    _write_atomically(table_path, text)
    written = [str(table_path)]
    if figure is not None:
        from gradbench.report.plots import save_figure

        save_figure(figure, figure_path)
        written.append(str(figure_path))
    print(text, end="")
    print(f"\nwritten: {', '.join(written)}" + (f"; {figure_note}" if figure_note else ""))
    return exit_code(outcomes)


def _list(args: argparse.Namespace) -> int:
    from gradbench.axes.activations import ACTIVATIONS
    from gradbench.axes.clipping import CLIPS
    from gradbench.axes.inits import INITS, init_defaults
    from gradbench.axes.optimizers import OPTIMIZERS
    from gradbench.axes.schedules import SCHEDULES
    from gradbench.axes.specs import format_spec
    from gradbench.tasks import TASKS

    _load_plugins(args)
    kinds = [args.what] if args.what else list(LISTS)
    for index, kind in enumerate(kinds):
        if len(kinds) > 1:
            print(("\n" if index else "") + kind)
        if kind == "tasks":
            rows = [(t.name, f"{t.description}; knobs: {t.describe_knobs()}") for _, t in TASKS.items()]
        elif kind == "optimizers":
            rows = [(o.name, f"[{_optimizer_source(o)}] {o.description}; defaults {format_spec('', dict(o.defaults))[1:-1]}") for _, o in OPTIMIZERS.items()]
        elif kind == "schedules":
            rows = [(format_spec(s.name, dict(s.params)), s.description) for _, s in SCHEDULES.items()]
        elif kind == "activations":
            rows = [(a.name, a.description) for _, a in ACTIVATIONS.items()]
        elif kind == "clips":
            rows = [(c.name if c.name == "none" else f"{c.name}:C", c.description) for _, c in CLIPS.items()]
        else:
            rows = [(format_spec(i.name, init_defaults(i.name)), i.description) for _, i in INITS.items()]
        width = max(len(name) for name, _ in rows)
        for name, description in rows:
            print(f"  {name:<{width}}  {description}")
    return 0


def _optimizer_source(spec: Any) -> str:
    """Where an optimizer comes from, for ``list``: its package, whether that is installed (found,
    not imported: ``list`` imports no torch), and why the runner cannot train it, if it cannot."""
    text = spec.source
    if spec.extra is not None and not spec.installed:
        text += f", not installed: pip install 'gradbench[{spec.extra}]'"
    if spec.limitation:
        text += f"; not trainable here: {spec.limitation}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        args.argv = argv  # to spell out the exact command that fixes some errors
        if args.version:
            from gradbench import __version__

            print(f"gradbench {__version__}")
            return 0
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        command = {"run": _run, "report": _report, "plot": _plot, "diagnose": _diagnose, "export": _export, "list": _list, "reproduce": _reproduce}[args.command]
        with _sigterm_as_interrupt():
            return command(args)
    except (UsageError, ValueError) as error:  # SuiteError and StoreError are ValueErrors
        print(f"gradbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `gradbench export | head`
        sys.stderr.close()
        return 0
    except OSError as error:  # a path the system refuses (a name over 255 bytes, ...), met while checking the arguments
        where = f" {shown(str(error.filename), 60)}" if error.filename is not None else ""
        print(f"gradbench: error: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as error:  # the disk filled up, the file vanished mid-run, ...
        print(f"gradbench: error: database error: {error}; every cell stored before it is kept", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # before a sweep started, or in another command: nothing was written
        print(f"\ngradbench: {_stopped(interrupt)}", file=sys.stderr)
        return _exit_code(interrupt)


if __name__ == "__main__":
    sys.exit(main())
