#!/usr/bin/env python3
"""Run every reproduction at its default size and write docs/reproductions.md: per paper the
protocol, the published | measured | band | verdict table, the figure, and the time it took.

    python scripts/reproductions.py [--db reproductions.db] [--only mnist1d,he_init] [--no-run]
        [--machine "2-core ..."] [-- extra flags for gradbench reproduce, e.g. --executor process --workers 2]

Each reproduction runs through the public command (`gradbench reproduce NAME --db DB`), so the
store resumes: a stored reproduction trains nothing, and --no-run only re-reads the store. The
page and figures are written whole or not at all (docs/reproductions.md, docs/reproductions/NAME.png).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from gradbench.grid.expansion import expand
from gradbench.report.files import write_atomically
from gradbench.report.plots import save_figure
from gradbench.reproduce.catalog import get, names, suite_of
from gradbench.reproduce.comparison import compare, render
from gradbench.reproduce.evidence import Evidence, MissingRuns
from gradbench.store.database import Store

ROOT = Path(__file__).resolve().parent.parent


def _elapsed(runs: list[dict]) -> tuple[float, float]:
    """(sum of the runs' wall times, first start to last finish) in seconds."""
    total = sum(run["wall_time_s"] or 0.0 for run in runs)
    starts = [datetime.fromisoformat(run["started_at"]) for run in runs if run["started_at"]]
    ends = [datetime.fromisoformat(run["finished_at"]) for run in runs if run["finished_at"]]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    return total, span


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="reproductions.db")
    parser.add_argument("--only", help="comma list of reproductions (default: all)")
    parser.add_argument("--no-run", action="store_true", help="read the store only")
    parser.add_argument("--machine", default=platform.processor() or platform.machine(), help="the machine, as the page names it")
    parser.add_argument("--output", default=str(ROOT / "docs"), help="folder of reproductions.md and reproductions/ (default: docs)")
    parser.add_argument("extra", nargs="*", help="flags passed to gradbench reproduce (after --)")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else names()
    output = Path(args.output)
    (output / "reproductions").mkdir(parents=True, exist_ok=True)

    command_times: dict[str, float] = {}
    codes: dict[str, int] = {}
    for name in chosen:
        get(name)  # an unknown name stops here, before anything runs
    scratch = tempfile.mkdtemp(prefix="gradbench-reproduce-")  # the command's own NAME.md and NAME.png: the page has its own
    for name in chosen:
        if args.no_run:
            continue
        started = time.perf_counter()
        argv = ["gradbench", "reproduce", name, "--db", args.db, "--output", scratch, "--no-progress", *args.extra]
        print("$ " + " ".join(argv), file=sys.stderr, flush=True)
        codes[name] = subprocess.run(argv, stdout=subprocess.DEVNULL).returncode
        command_times[name] = time.perf_counter() - started
        if codes[name] not in (0, 1):
            print(f"gradbench reproduce {name} failed (exit {codes[name]})", file=sys.stderr)
            return codes[name]

    sections, summary = [], []
    with Store.open(args.db, readonly=True) as store:
        for name in chosen:
            reproduction = get(name)
            cells = expand(suite_of(reproduction))
            evidence = Evidence.of_cells(store, cells)
            outcomes = compare(reproduction, evidence)
            runs = evidence.all_runs
            total, span = _elapsed(runs)
            threads = sorted({json.loads(run["config"]).get("threads", 1) for run in runs})
            figure_line = ""
            if reproduction.figure is not None:
                try:
                    save_figure(reproduction.figure(evidence), output / "reproductions" / f"{name}.png")
                    figure_line = f"![{reproduction.title}](reproductions/{name}.png)\n"
                except MissingRuns as error:
                    figure_line = f"(figure not drawn: {error})\n"
            within = sum(outcome.verdict == "within" for outcome in outcomes)
            timing = f"{len(runs)} runs of {len(cells)} cells; {total / 60:.1f} min of run time (one thread each), {span / 60:.1f} min from first start to last finish"
            if name in command_times:
                timing += f"; `gradbench reproduce {name}` took {command_times[name] / 60:.1f} min here"
            summary.append(f"| [{name}](#{name}) | {reproduction.title} | {within} of {len(outcomes)} | {total / 60:.1f} min |")
            table = render(reproduction, outcomes).split("\n", 2)[2]  # the title becomes the section's heading
            sections.append(
                f'<a id="{name}"></a>\n\n## {reproduction.title}\n\n'
                f"`gradbench reproduce {name}`" + (f" (`--full`: {reproduction.full_note})" if reproduction.full else "") + "\n\n"
                f"**Protocol.** {reproduction.protocol}\n\n{table}\n{figure_line}\n*Time:* {timing}; threads {threads}.\n"
            )
    page = (
        "# Published results, reproduced\n\n"
        "Made by `scripts/reproductions.py` from the store its `gradbench reproduce` runs wrote, at each reproduction's\n"
        f"default size, on {args.machine}. Every band was set from the paper and the protocol before the runs;\n"
        "a number outside its band is reported as outside, with what we found about why in the protocol.\n\n"
        "| reproduction | paper and result | claims within their bands | run time |\n|---|---|---|---|\n"
        + "\n".join(summary) + "\n\n" + "\n".join(sections)
    )

    def write(temporary: str) -> None:
        Path(temporary).write_text(page, encoding="utf-8")

    write_atomically(output / "reproductions.md", write)
    print(f"wrote {output / 'reproductions.md'} ({len(chosen)} reproductions)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
