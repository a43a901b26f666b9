#!/usr/bin/env bash
# Regression-check training speed on one machine: save a baseline, change something, compare.
#
#   scripts/bench_regression.sh save [NAME]                   # time the gated benchmarks, save them as NAME
#   scripts/bench_regression.sh compare [NAME] [LIMIT] [EACH] # time them again and fail if
#       # - the median over all gated benchmarks of their median change is above LIMIT (default 5%), or
#       # - any one benchmark's median is more than EACH slower (default 100%: twice as slow)
#   scripts/bench_regression.sh report                        # the report-only benchmarks: printed, never gated
#   scripts/bench_regression.sh selftest [LIMIT] [EACH] [SLOWDOWN]
#       # prove the gate on this machine: save, compare twice on unchanged code (both must pass),
#       # compare with every step SLOWDOWN (default 0.15) slower (must fail); prints the changes
#
# Gated: the per-step benchmarks (pytest marker `gated`, bench/test_step.py): one training step
# per round, at least 20 rounds, up to 2 s each. Report-only: everything else in bench/ (whole
# sweeps timed once, overhead ratios of interleaved loops): `report` prints them and fails only
# if a benchmark errors.
# Two limits, because on a shared machine one benchmark's median moves by tens of percent from
# one run to the next (other processes evict the caches and take the memory bandwidth), while
# the median change over all of them stays within a few percent: LIMIT catches a change that
# slows every step (the runner, the monitor, torch), EACH one that makes a single benchmark much
# slower. On a quiet machine, where `selftest` shows single benchmarks moving by a few percent,
# EACH can be as tight as LIMIT.
# The clock is this thread's CPU time on the CPU with one torch thread (bench/conftest.py,
# --gb-clock), wall time on CUDA. Extra pytest options go in $BENCH_ARGS, e.g. "--gb-quick" or
# "--gb-device cuda"; give save and compare the same ones. Baselines are saved under .benchmarks/
# (git-ignored); compare only on the machine that saved.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-}"
# One torch thread; at least 20 one-step rounds per benchmark, and up to 2 s of them; no garbage
# collection inside a timed step.
gated=(bench/ -m gated --gb-threads 1 --benchmark-min-rounds=20 --benchmark-max-time=2 --benchmark-disable-gc --benchmark-group-by=group)
storage=.benchmarks

usage() {
  echo "usage: $0 save [NAME] | compare [NAME] [LIMIT like 5%] [EACH like 100%] | report | selftest [LIMIT] [EACH] [SLOWDOWN like 0.15]" >&2
  exit 2
}

check_limit() {
  [[ "$1" =~ ^[0-9]+%$ ]] || { echo "invalid limit '$1': give a whole percentage like 5%" >&2; exit 2; }
}

# The suite check: each gated benchmark's median change against the newest baseline NAME in the
# storage, and their median. Prints one line; exit 1 if that median is above LIMIT.
suite_check() {  # NAME LIMIT JSON
  python - "$storage" "$1" "${2%\%}" "$3" <<'EOF'
import glob, json, statistics, sys
storage, name, limit, now_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
saved = sorted(glob.glob(f"{storage}/*/[0-9][0-9][0-9][0-9]_{name}.json"))
if not saved:
    sys.exit(f"no baseline named {name!r} under {storage}/: run save {name} first")
def medians(path):
    return {b["fullname"]: b["stats"]["median"] for b in json.load(open(path))["benchmarks"]}
base, now = medians(saved[-1]), medians(now_path)
change = sorted((now[n] / base[n] - 1, n.split("::")[-1]) for n in base.keys() & now.keys())
if not change:
    sys.exit(f"no benchmark of {now_path} is in the baseline {saved[-1]}")
suite = statistics.median(c for c, _ in change)
verdict = f"FAILED: above {limit:g}%" if suite * 100 > limit else f"passed: within {limit:g}%"
most = ", ".join(f"{n} {c:+.1%}" for c, n in change[::-1][:3])
print(f"suite: median change of {len(change)} gated benchmarks {suite:+.1%} ({verdict}); "
      f"single benchmarks from {change[0][0]:+.1%} ({change[0][1]}); most slowed: {most}")
sys.exit(1 if suite * 100 > limit else 0)
EOF
}

# Time the gated benchmarks against baseline NAME, fail beyond LIMIT or EACH; extra pytest options after.
compare() {  # NAME LIMIT EACH JSON [pytest options]
  local name="$1" limit="$2" each="$3" json="$4" rc=0 suite_rc=0
  shift 4
  python -m pytest "${gated[@]}" --benchmark-storage="$storage" --benchmark-compare="*$name" \
    --benchmark-compare-fail="median:$each" --benchmark-json="$json" "$@" ${BENCH_ARGS:-} || rc=$?
  [[ -f "$json" ]] || return "$(( rc ? rc : 1 ))"
  suite_check "$name" "$limit" "$json" || suite_rc=$?
  return "$(( rc ? rc : suite_rc ))"
}

case "$action" in
  save)
    exec python -m pytest "${gated[@]}" --benchmark-storage="$storage" --benchmark-save="${2:-baseline}" ${BENCH_ARGS:-}
    ;;
  compare)
    name="${2:-baseline}" limit="${3:-5%}" each="${4:-100%}"
    check_limit "$limit"; check_limit "$each"
    mkdir -p "$storage"
    compare "$name" "$limit" "$each" "$storage/last_compare.json"
    ;;
  report)
    exec python -m pytest bench/ -m "not gated" -s --gb-threads 1 --benchmark-group-by=group ${BENCH_ARGS:-}
    ;;
  selftest)
    limit="${2:-5%}" each="${3:-100%}" slowdown="${4:-0.15}"
    check_limit "$limit"; check_limit "$each"
    mkdir -p .benchmarks
    dir="$(mktemp -d .benchmarks/selftest.XXXXXX)"  # under the working tree: pytest-benchmark wants its storage there
    storage="$dir/storage"  # leaves the saved baselines alone
    echo "selftest: LIMIT $limit, EACH $each, SLOWDOWN $slowdown; logs and JSON in $dir; $(uptime)"
    python -m pytest "${gated[@]}" --benchmark-storage="$storage" --benchmark-save=selftest ${BENCH_ARGS:-} >"$dir/save.log" 2>&1 \
      || { echo "selftest: saving the baseline failed, see $dir/save.log" >&2; exit 1; }
    failed=0
    for run in unchanged-1 unchanged-2 slowdown; do
      extra=()
      [[ "$run" == slowdown ]] && extra=(--gb-slowdown "$slowdown")
      echo "selftest: compare $run ($(uptime | sed 's/.*load/load/'))"
      rc=0
      compare selftest "$limit" "$each" "$dir/$run.json" "${extra[@]}" >"$dir/$run.log" 2>&1 || rc=$?
      grep "^suite:" "$dir/$run.log" | sed 's/^/  /' || true
      singles=$(grep -c "has failed PercentageRegressionCheck" "$dir/$run.log" || true)
      if [[ "$run" == slowdown ]]; then
        if [[ $rc -ne 0 ]]; then
          echo "  failed as it must (exit $rc; $singles single benchmark(s) over $each)"
        else
          echo "  FAIL: a $slowdown slowdown passed the gate"; failed=1
        fi
      elif [[ $rc -eq 0 ]]; then
        echo "  passed as it must"
      else
        echo "  FAIL: unchanged code failed the gate (exit $rc), see $dir/$run.log"
        grep "has failed PercentageRegressionCheck" "$dir/$run.log" || true
        failed=1
      fi
    done
    echo "selftest: $([[ $failed -eq 0 ]] && echo passed || echo FAILED) ($(uptime | sed 's/.*load/load/'))"
    exit "$failed"
    ;;
  *)
    usage
    ;;
esac
