#!/usr/bin/env python3
"""Run every reproduction at its default size and write docs/reproductions.md: per paper the
protocol, the published | measured | band | verdict table, the figure, and the time it took.

    python scripts/reproductions.py [--db reproductions.db] [--only mnist1d,he_init] [--no-run]
        [--executor process --workers 2] [--device cuda] [--threads N] [--machine "..."]

Each reproduction runs through the public command (`gradbench reproduce NAME --db DB`), so the
store resumes: a stored reproduction trains nothing, and --no-run only re-reads the store. The
page and figures are written whole or not at all (docs/reproductions.md, docs/reproductions/NAME.png).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradbench.report.files import write_atomically
from gradbench.report.plots import save_figure
from gradbench.reproduce.catalog import cells_of, get, names
from gradbench.reproduce.comparison import compare, render
from gradbench.reproduce.evidence import Evidence
from gradbench.store.database import Store

ROOT = Path(__file__).resolve().parent.parent


def _run(name: str, args: argparse.Namespace) -> tuple[int, float]:
    """``gradbench reproduce NAME`` with the script's settings: its exit code and wall seconds."""
    argv = ["gradbench", "reproduce", name, "--db", args.db, "--no-progress", "--executor", args.executor]
    for flag, value in (("--workers", args.workers), ("--device", args.device), ("--threads", args.threads)):
        if value is not None:
            argv += [flag, str(value)]
    scratch = tempfile.mkdtemp(prefix="gradbench-reproduce-")  # the command's own NAME.md and .png: the page makes its own
    try:
        print("$ " + " ".join(argv), file=sys.stderr, flush=True)
        started = time.perf_counter()
        code = subprocess.run([*argv, "--output", scratch], stdout=subprocess.DEVNULL).returncode
        return code, time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _section(name: str, store: Store, args: argparse.Namespace, figures: Path, seconds: float | None) -> tuple[str, str]:
    """A reproduction's section of the page, and its row of the summary table."""
    reproduction = get(name)
    cells = cells_of(reproduction, device=args.device, threads=args.threads)  # the cells the command ran: the same keys
    evidence = Evidence(store, cells)
    outcomes = compare(reproduction, evidence)
    runs = evidence.all_runs
    run_minutes = sum(run["wall_time_s"] or 0.0 for run in runs) / 60
    threads = sorted({json.loads(run["config"]).get("threads", 1) for run in runs})
    figure_line = ""
    if reproduction.figure is not None:
        try:
            save_figure(reproduction.figure(evidence), figures / f"{name}.png")
            figure_line = f"![{reproduction.title}](reproductions/{name}.png)\n"
        except Exception as error:  # noqa: BLE001 (the page says so instead of losing every other section)
            figure_line = f"(figure not drawn: {error})\n"
    within = sum(outcome.verdict == "within" for outcome in outcomes)
    timing = f"{len(runs)} runs of {len(cells)} cells, {run_minutes:.1f} min of training in all (one thread each: threads {threads})"
    if seconds is not None:
        timing += f"; `gradbench reproduce {name}` took {seconds / 60:.1f} min wall here"
    table = render(reproduction, outcomes).split("\n", 2)[2]  # the title becomes the section's heading
    full = f" (`--full`: {reproduction.full_note})" if reproduction.full else ""
    section = (
        f'<a id="{name}"></a>\n\n## {reproduction.title}\n\n`gradbench reproduce {name}`{full}\n\n'
        f"**Protocol.** {reproduction.protocol}\n\n{table}\n{figure_line}\n*Time:* {timing}.\n"
    )
    wall = f"{seconds / 60:.1f} min" if seconds is not None else "-"
    return section, f"| [{name}](#{name}) | {reproduction.title} | {within} of {len(outcomes)} | {wall} | {run_minutes:.1f} min |"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", default="reproductions.db")
    parser.add_argument("--only", help="comma list of reproductions (default: all)")
    parser.add_argument("--no-run", action="store_true", help="read the store only")
    parser.add_argument("--executor", default="serial", help="gradbench reproduce --executor (default: serial)")
    parser.add_argument("--workers", type=int, help="gradbench reproduce --workers")
    parser.add_argument("--device", help="gradbench reproduce --device (part of each run's key)")
    parser.add_argument("--threads", type=int, help="gradbench reproduce --threads (part of each run's key)")
    parser.add_argument("--machine", default=platform.processor() or platform.machine(), help="the machine, as the page names it")
    parser.add_argument("--output", default=str(ROOT / "docs"), help="folder of reproductions.md and reproductions/ (default: docs)")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else names()
    try:
        for name in chosen:
            get(name)  # an unknown name stops here, before anything runs or is written
    except ValueError as error:
        parser.error(str(error))
    if args.no_run and not Path(args.db).is_file():
        parser.error(f"--no-run: no database {args.db}")

    seconds: dict[str, float] = {}
    for name in chosen if not args.no_run else ():
        code, seconds[name] = _run(name, args)
        if code not in (0, 1):  # 1: some claim outside its band, which the page reports
            print(f"gradbench reproduce {name} failed (exit {code})", file=sys.stderr)
            return code

    output = Path(args.output)
    figures = output / "reproductions"
    figures.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    with Store.open(args.db, readonly=True) as store:
        for name in chosen:
            section, row = _section(name, store, args, figures, seconds.get(name))
            sections.append(section)
            summary.append(row)
    where = f"on {args.machine}, with --executor {args.executor}" + (f" --workers {args.workers}" if args.workers else "")
    page = (
        "# Published results, reproduced\n\n"
        "Made by `scripts/reproductions.py` from the store its `gradbench reproduce` runs wrote, at each reproduction's\n"
        f"default size, {where}. Every band was set from the paper and the protocol before the runs;\n"
        "a number outside its band is reported as outside, with what we found about why in the protocol.\n\n"
        "| reproduction | paper and result | claims within their bands | wall time | training time (sum over runs) |\n"
        "|---|---|---|---:|---:|\n" + "\n".join(summary) + "\n\n" + "\n".join(sections)
    )

    def write(temporary: str) -> None:
        Path(temporary).write_text(page, encoding="utf-8")

    write_atomically(output / "reproductions.md", write)
    print(f"wrote {output / 'reproductions.md'} ({len(chosen)} reproductions)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
