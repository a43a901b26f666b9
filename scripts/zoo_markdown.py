#!/usr/bin/env python3
"""One Markdown table per task from `gradbench report --tuned --format csv --metric
test_accuracy,steps_to_target,step_time,state_bytes` (read from stdin): each optimizer a row at
its tuned learning rate, the four measures side by side, best test accuracy first.

    gradbench report --db zoo.db --tuned --format csv --metric test_accuracy,steps_to_target,step_time,state_bytes \
        | scripts/zoo_markdown.py

Used by scripts/zoo_table.sh for docs/optimizers.md.
"""

from __future__ import annotations

import csv
import sys

from gradbench.report.flat import bytes_text

MEASURES = {"test_accuracy": "test acc %", "steps_to_target": "steps to target", "step_time": "step ms", "state_bytes": "optimizer state"}


def _text(metric: str, row: dict[str, str]) -> str:
    if not row.get("mean"):
        return "not reached" if metric == "steps_to_target" and row.get("done") != "0" else "-"
    value = float(row["mean"])
    if metric == "test_accuracy":
        return f"{value:.1f}"
    if metric == "steps_to_target":
        return f"{value:.0f}"
    if metric == "step_time":
        return f"{1000 * value:.2f}"
    return bytes_text(value)


def main() -> None:
    tables: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for row in csv.DictReader(sys.stdin):
        tables.setdefault(row["task"], {}).setdefault(row["optimizer"], {})[row["metric"]] = row
    for task, optimizers in tables.items():

        def accuracy(item: tuple[str, dict[str, dict[str, str]]]) -> float:
            mean = item[1].get("test_accuracy", {}).get("mean")
            return -float(mean) if mean else float("inf")

        print(f"### {task}\n")
        print("| optimizer | tuned lr | " + " | ".join(MEASURES.values()) + " | runs |")
        print("|---|---:|" + "---:|" * len(MEASURES) + "---|")
        for name, rows in sorted(optimizers.items(), key=lambda item: (accuracy(item), item[0])):
            first = next(iter(rows.values()))
            status = "done" if first["done"] == first["runs"] else f"{first['done']}/{first['runs']} done" + (f", {first['diverged']} diverged" if first["diverged"] != "0" else "") + (f", {first['failed']} failed" if first["failed"] != "0" else "")
            cells = [_text(metric, rows[metric]) if metric in rows else "-" for metric in MEASURES]
            print(f"| {name} | {first['tuned_lr'] or '-'} | " + " | ".join(cells) + f" | {status} |")
        print()


if __name__ == "__main__":
    main()
