#!/usr/bin/env python3
"""Write the zoo suite: every registered optimizer the runner can train, each at three learning
rates around its own default (1/3x, 1x, 3x), on three offline tasks, with a validation split for
`gradbench report --tuned`.

    scripts/zoo_suite.py > gradbench/suites/zoo.toml          # the shipped suite
    scripts/zoo_suite.py --only adam,lion,muon --steps 300     # a reduced one, same shape
    scripts/zoo_suite.py --exclude lbfgs,kron --steps 300      # all but some

Needs the optimizer extra (pip install 'gradbench[optimizers]') only to run the suite: the
registry lists its optimizers without it. tests/grid/test_zoo_suite.py checks that the shipped
file is what this script writes.
"""

from __future__ import annotations

import argparse
import sys

from gradbench.axes.optimizers import OPTIMIZERS
from gradbench.axes.specs import format_spec

TASKS = ["digits_mlp[depth=4,width=64]", "mnist1d_cnn", "mnist1d_gru[depth=1,width=32]"]
FACTORS = (1 / 3, 1.0, 3.0)
STEPS = 1000


def learning_rates(default: float) -> list[float]:
    return [float(f"{default * factor:.3g}") for factor in FACTORS]


def zoo(only: list[str] | None = None, steps: int = STEPS, exclude: list[str] | None = None) -> str:
    names = [name for name, spec in OPTIMIZERS.items() if not spec.limitation]
    for chosen in (only, exclude):
        unknown = sorted(set(chosen or ()) - set(names))
        if unknown:
            raise SystemExit(f"zoo_suite.py: not registered, or not trainable here: {', '.join(unknown)}")
    if only is not None:
        names = [name for name in names if name in only]
    names = [name for name in names if name not in (exclude or ())]
    # A reduced zoo says how it was made, so the table made from it does too.
    flags = ([f"--only {','.join(names)}"] if only is not None else []) + ([f"--exclude {','.join(exclude)}"] if exclude else [])
    flags += [f"--steps {steps}"] if steps != STEPS else []
    reduced = f" (a reduced zoo: scripts/zoo_suite.py {' '.join(flags)})" if flags else ""
    lines = [
        "# The optimizer zoo: every registered optimizer the runner can train (`gradbench list",
        "# optimizers`; the catalogue's need `pip install 'gradbench[optimizers]'`), each at 1/3x, 1x",
        "# and 3x its default learning rate, on three offline tasks: an MLP, a CNN and a GRU.",
        "# `gradbench report --tuned` keeps each one's best rate, chosen on the validation split.",
        "# Written by scripts/zoo_suite.py (a test checks it is current); scripts/zoo_table.sh runs it",
        "# and writes docs/optimizers.md.",
        'name = "zoo"',
        f'description = "{len(names)} optimizers x 3 learning rates on an MLP, a CNN and a GRU, tuned on a validation split{reduced}"',
        "tasks = [" + ", ".join(f'"{task}"' for task in TASKS) + "]",
        f"steps = {steps}",
        "seeds = [0]",
        "validation = 0.1",
        "",
        "[[grid]]",
        "optimizers = [",
    ]
    for name in names:
        rates = learning_rates(OPTIMIZERS.get(name).defaults["lr"])
        lines.append("    " + ", ".join(f'"{format_spec(name, {"lr": lr})}"' for lr in rates) + ",")
    lines.append("]")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma list of optimizers (a reduced zoo)")
    parser.add_argument("--exclude", help="comma list of optimizers to leave out (one whose CPU step takes seconds)")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    sys.stdout.write(zoo(args.only.split(",") if args.only else None, args.steps, args.exclude.split(",") if args.exclude else None))


if __name__ == "__main__":
    main()
