#!/usr/bin/env bash
# Run the optimizer zoo and write docs/optimizers.md: per task, each optimizer at its best
# learning rate (report --tuned, chosen on the validation split) with its test accuracy, steps
# to the task's target, step time and optimizer state in one table (scripts/zoo_markdown.py),
# then the performance profiles over the three tasks (Dolan & More, steps and time to target).
#   scripts/zoo_table.sh [DB] [SUITE]
#     DB     the store (default /tmp/gradbench-zoo.db); the run resumes, so a stored zoo trains nothing
#     SUITE  the suite (default gradbench/suites/zoo.toml; scripts/zoo_suite.py --only ... writes a reduced one)
# Needs the optimizer extra: pip install 'gradbench[optimizers]'. The full zoo is 1170 cells
# (130 optimizers x 3 learning rates x 3 tasks, 1000 steps): hours on one CPU core, so give it
# --executor process on a machine with cores to spare (GRADBENCH_RUN_FLAGS="--executor process").
# ZOO_MACHINE names the machine in the table's header (its step times are that machine's).
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-/tmp/gradbench-zoo.db}
suite=${2:-gradbench/suites/zoo.toml}
gradbench=${GRADBENCH:-gradbench}
python=${PYTHON:-python3}

# shellcheck disable=SC2086  # the extra flags are words
$gradbench run "$suite" --db "$db" --no-progress ${GRADBENCH_RUN_FLAGS:-} > /dev/null

# The tables cover the suite's optimizers, whatever else the store holds.
optimizers=$(grep -o '"[A-Za-z0-9_.:]*\[lr=' "$suite" | sed 's/^"//; s/\[lr=$//' | sort -u | paste -sd, -)
pivot=(--db "$db" --tuned --rows optimizer --where "optimizer=$optimizers")  # one table per task
table=$(mktemp docs/.optimizers.md.XXXXXX)
trap 'rm -f "$table"' EXIT
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$suite")
{
    echo "# The optimizer zoo"
    echo
    echo "Made by \`scripts/zoo_table.sh\` from the suite $(sed -n 's/^name = "\(.*\)"$/\1/p' "$suite"): $description; $(sed -n 's/^steps = //p' "$suite") steps, 1 seed."
    echo "Each optimizer at the learning rate with the best validation loss of the three it ran with."
    echo "Step times are of one CPU thread, one run per worker, on the machine that made the table"
    echo "(${ZOO_MACHINE:-not stated}); an L-BFGS step holds up to 25 loss evaluations. Optimizer state: the"
    echo "bytes of the tensors the optimizer keeps (after its first and last step, the larger; each"
    echo "storage once). One seed: differences of a point or two in accuracy are within seed noise."
    echo
    echo "## Each optimizer at its tuned learning rate, best test accuracy first"
    echo
    echo "Steps to target: the first evaluation at or past the task's target (not reached: never in the"
    echo "run); step ms: the median wall time of a training step; runs: a diverged or failed run has no"
    echo "measures (failed: the optimizer raised; its error is in the store)."
    echo
    $gradbench report "${pivot[@]}" --format csv --metric test_accuracy,steps_to_target,step_time,state_bytes | $python scripts/zoo_markdown.py
    echo
    echo "## Performance profiles over the three tasks"
    echo
    $gradbench report --db "$db" --tuned --rows optimizer --where "optimizer=$optimizers" --profiles
} > "$table"
chmod 644 "$table"
mv "$table" docs/optimizers.md
