#!/usr/bin/env bash
# Regression-check training speed on one machine: save a baseline, change something, compare.
#
#   scripts/bench_regression.sh save [NAME]              # time bench/ and save it as NAME
#   scripts/bench_regression.sh compare [NAME] [LIMIT]   # time again; fail if any median is
#                                                        # more than LIMIT slower (default 5%)
# Extra pytest options go in $BENCH_ARGS, e.g. BENCH_ARGS="--gb-quick" or "--gb-device cuda".
# Baselines are saved under .benchmarks/ (git-ignored); compare only on the machine that saved.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-}"
name="${2:-baseline}"
limit="${3:-5%}"
# One torch thread, at least 20 rounds per benchmark, and 2 s each: stable numbers on shared CPUs.
common=(bench/ --gb-threads 1 --benchmark-min-rounds=20 --benchmark-max-time=2 --benchmark-group-by=group)

case "$action" in
  save)
    exec python -m pytest "${common[@]}" --benchmark-save="$name" ${BENCH_ARGS:-}
    ;;
  compare)
    exec python -m pytest "${common[@]}" --benchmark-compare="*$name" --benchmark-compare-fail="median:$limit" ${BENCH_ARGS:-}
    ;;
  *)
    echo "usage: $0 save [NAME] | compare [NAME] [LIMIT like 5%]" >&2
    exit 2
    ;;
esac
