#!/usr/bin/env bash
# Run the optimizer zoo and write docs/optimizers.md: per optimizer and task, at each one's
# best learning rate (report --tuned, chosen on the validation split), the test accuracy,
# steps to the task's target and the step time, then the performance profiles over the three
# tasks (Dolan & More, on steps and on time to target), and the bytes of each optimizer's state.
#   scripts/zoo_table.sh [DB] [SUITE]
#     DB     the store (default /tmp/gradbench-zoo.db); the run resumes, so a stored zoo trains nothing
#     SUITE  the suite (default gradbench/suites/zoo.toml; scripts/zoo_suite.py --only ... writes a reduced one)
# Needs the optimizer extra: pip install 'gradbench[optimizers]'. The full zoo is 1179 cells
# (131 optimizers x 3 learning rates x 3 tasks, 1000 steps): hours on one CPU core, so give it
# --executor process on a machine with cores to spare (GRADBENCH_RUN_FLAGS="--executor process").
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-/tmp/gradbench-zoo.db}
suite=${2:-gradbench/suites/zoo.toml}
gradbench=${GRADBENCH:-gradbench}

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
    echo "Each optimizer at the learning rate with the best validation loss of the three it ran with;"
    echo "bold: the best in its column. Step times are of one CPU thread on the machine that made the"
    echo "table; an L-BFGS step holds up to 25 loss evaluations. State memory: the bytes of the tensors"
    echo "the optimizer keeps (after its first and last step, the larger; each storage once)."
    echo
    echo "## Test accuracy"
    echo
    $gradbench report "${pivot[@]}" --metric test_accuracy
    echo
    echo "## Steps to the task's target"
    echo
    $gradbench report "${pivot[@]}" --metric steps_to_target
    echo
    echo "## Step time (wall)"
    echo
    $gradbench report "${pivot[@]}" --metric step_time
    echo
    echo "## Optimizer state memory"
    echo
    $gradbench report "${pivot[@]}" --metric state_bytes
    echo
    echo "## Performance profiles over the three tasks"
    echo
    $gradbench report --db "$db" --tuned --rows optimizer --where "optimizer=$optimizers" --profiles
} > "$table"
chmod 644 "$table"
mv "$table" docs/optimizers.md
