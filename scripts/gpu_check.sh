#!/usr/bin/env bash
# Check gradbench's CUDA paths on a GPU machine in one go (under 8 minutes on one GPU) and write
# one Markdown summary: a verdict table, then a section per part with its result, key numbers
# and the tail of its log (full logs in SUMMARY's folder, under <summary name>.logs/).
#
#   scripts/gpu_check.sh [SUMMARY.md] [--dry-run]        (default SUMMARY: gpu_check.md)
#
# Parts, in this order, each under its own timeout; a part that fails or hangs does not stop the others:
#   0 environment  nvidia-smi, torch and CUDA versions, GPU names; MNIST-1D generated once into a
#                  cache all parts share
#   1 CUDA tests   pytest -m cuda tests/ (tests/test_cuda.py and any test marked cuda), then the
#                  older CUDA tests (-k cuda in tests/monitor/test_health_statistics.py and
#                  tests/run/test_benchmark.py)
#   2 sync debug   the monitored step under torch.cuda.set_sync_debug_mode("error"): part 1's
#                  tests of it, reported on their own
#   3 benchmarks   pytest bench/ --gb-quick --gb-device cuda, then one training step timed by the
#                  host clock with and without synchronisation (scripts/gpu_check.py sync-timing)
#   4 suite        the default suite with --device cuda into a fresh store, then gradbench report
#   5 pool         a small grid with --executor process on every visible GPU: which worker ran on
#                  which GPU, from the environment each run stored
#
# Environment:
#   GB_CHECK_DEVICE=cpu  every part on the CPU with tiny sizes, the CUDA tests skipping (same as
#                        --dry-run): proves the plumbing, the summary and the timeouts without a GPU
#   GB_CHECK_BUDGET=460  seconds for the whole check. Each step may use its planned share plus what
#                        the steps before it left unused, never the shares of the steps after it
#   GB_CHECK_PARTS       the parts to run, of: tests bench suite pool (default: all; 0 always runs)
#   GB_CHECK_WORK        folder for the stores and the dataset cache (default: a new temporary one)
#   PYTHON               the interpreter (default: python3)
#   GRADBENCH            the gradbench command (default: the gradbench entry point if on PATH,
#                        else $PYTHON -m gradbench)
# Runs from the repository root with it on PYTHONPATH: gradbench need not be installed.
# Exit status: 0 when every part that ran passed, 1 otherwise, 2 for bad arguments.
set -uo pipefail  # no -e: a failing part is recorded and the next one runs

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

summary_arg=gpu_check.md
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option '$arg'; choose from: --dry-run, --help" >&2; exit 2 ;;
    *) summary_arg=$arg ;;
  esac
done
device=${GB_CHECK_DEVICE:-cuda}
((dry_run)) && device=cpu
case "$device" in
  cuda | cpu) ;;
  *) echo "gpu_check.sh: invalid GB_CHECK_DEVICE '$device'; choose from: cuda, cpu" >&2; exit 2 ;;
esac
budget=${GB_CHECK_BUDGET:-460}
if ! [[ $budget =~ ^[0-9]+$ ]] || ((budget < 60)); then
  echo "gpu_check.sh: invalid GB_CHECK_BUDGET '$budget'; give whole seconds >= 60" >&2
  exit 2
fi
parts_wanted=${GB_CHECK_PARTS:-tests bench suite pool}
for part in $parts_wanted; do
  case "$part" in
    tests | bench | suite | pool) ;;
    *) echo "gpu_check.sh: invalid part '$part' in GB_CHECK_PARTS; choose from: tests, bench, suite, pool" >&2; exit 2 ;;
  esac
done

summary=$(realpath -m -- "$summary_arg")
logs="${summary%.md}.logs"
cd "$(dirname "$0")/.." || exit 2
root=$PWD
mkdir -p "$(dirname "$summary")" "$logs" || exit 2
work=${GB_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gradbench-gpu-check.XXXXXX")}
mkdir -p "$work" || exit 2

export PYTHONUNBUFFERED=1
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export GRADBENCH_CACHE=${GRADBENCH_CACHE:-$work/cache}  # MNIST-1D generated once, for every part
export MPLBACKEND=Agg
PY=${PYTHON:-python3}
if [[ -n ${GRADBENCH:-} ]]; then
  read -r -a gb <<<"$GRADBENCH"
elif command -v gradbench >/dev/null 2>&1; then
  gb=(gradbench)
else
  gb=("$PY" -m gradbench)
fi

GRACE=10  # seconds between the timeout's SIGINT (pytest and gradbench stop cleanly) and SIGKILL
start=$SECONDS
deadline=$((start + budget))
say() { printf '[gpu_check %4ds] %s\n' "$((SECONDS - start))" "$*"; }

# Planned seconds per step, in run order (one H200: the CUDA tests ~1 min, the quick benchmarks
# ~1-1.5 min, the default suite's 20 cells ~1.5-2 min). They add up to the default budget.
steps_all=(env tests tests_old bench sync_timing suite pool)
declare -A planned=([env]=40 [tests]=80 [tests_old]=30 [bench]=90 [sync_timing]=30 [suite]=145 [pool]=45)
declare -A runs_step=([env]=1)
for part in $parts_wanted; do
  case "$part" in
    tests) runs_step[tests]=1 runs_step[tests_old]=1 ;;
    bench) runs_step[bench]=1 runs_step[sync_timing]=1 ;;
    *) runs_step[$part]=1 ;;
  esac
done

# The time limit of a step: what is left before the deadline, less the planned shares of the
# steps still to come and the grace of this one's timeout. Empty when under 5 seconds.
limit_for() {
  local step=$1 later=0 after=0 s
  for s in "${steps_all[@]}"; do
    if ((after)) && [[ -n ${runs_step[$s]:-} ]]; then later=$((later + planned[$s])); fi
    [[ $s == "$step" ]] && after=1
  done
  local limit=$((deadline - SECONDS - later - GRACE))
  ((limit >= 5)) && echo "$limit"
}

child=
interrupted=0
rc=0
outcome=""
# run_logged LOG LIMIT COMMAND...: COMMAND under its timeout, its output appended to LOG; sets rc
# and outcome ("rc N", "TIMED OUT after LIMIT s" or "interrupted").
run_logged() {
  local log=$1 limit=$2
  shift 2
  echo "\$ $*" >>"$log"
  if ((interrupted)); then
    echo "[gpu_check] not run: the check was interrupted" >>"$log"
    rc=130 outcome="not run (interrupted)"
    return 0
  fi
  # timeout runs COMMAND in a process group of its own and signals all of it: pool workers too.
  timeout -s INT -k "$GRACE" "$limit" "$@" >>"$log" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  if ((interrupted)); then  # the trap ran: wait for the step to stop
    wait "$child" 2>/dev/null
    rc=130
  fi
  child=
  outcome="rc $rc"
  if ((interrupted)); then
    outcome="interrupted"
  elif ((rc == 124 || rc == 137)); then
    outcome="TIMED OUT after $limit s"
    echo "[gpu_check] TIMED OUT after ${limit} s (rc $rc)" >>"$log"
  fi
  return 0
}

# shellcheck disable=SC2317  # called by the trap
on_signal() {
  interrupted=1
  say "interrupted: stopping the running step and writing the summary"
  [[ -n $child ]] && kill -INT -- "-$child" 2>/dev/null
  [[ -n $child ]] && kill -INT "$child" 2>/dev/null
}
trap on_signal INT TERM HUP

# -- the summary: rewritten after every part, so a killed check still leaves what it found -------

declare -A result seconds keys titles
order=()
section_of() { echo "$work/section_$1.md"; }

# record PART TITLE RESULT SECONDS KEY-NUMBERS: a row of the verdict table (its section is written by the part).
record() {
  local part=$1
  [[ -z ${result[$part]:-} ]] && order+=("$part")
  titles[$part]=$2
  result[$part]=$3
  seconds[$part]=$4
  keys[$part]=$5
  say "${2}: $3 (${4} s) $5"
  write_summary
}

tail_of() {  # tail_of LOG LINES: the last lines of a log, fenced
  echo
  echo "Last $2 lines of \`$(basename "$1")\`:"
  echo
  echo '~~~~text'
  tail -n "$2" "$1" 2>/dev/null | cut -c1-400
  echo '~~~~'
}

write_summary() {
  local tmp="$summary.tmp.$$" overall=PASS part
  for part in "${order[@]}"; do [[ ${result[$part]} == PASS ]] || overall=FAIL; done
  ((interrupted)) && overall="FAIL (interrupted)"
  {
    echo "# gradbench GPU check: $overall"
    echo
    echo "- device: **$device**$( ((dry_run)) || [[ $device == cpu ]] && echo ' (dry run: every part on the CPU with tiny sizes; the CUDA tests skip)')"
    echo "- when: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), on $(hostname 2>/dev/null || uname -n)"
    echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- gradbench command: \`${gb[*]}\`; python: \`$PY\`; PYTHONPATH=\`$PYTHONPATH\`"
    echo "- elapsed: $((SECONDS - start)) s of a budget of $budget s; full logs: \`$logs\`"
    echo
    echo "| part | result | seconds | key numbers |"
    echo "|---|---|---:|---|"
    for part in "${order[@]}"; do
      echo "| ${titles[$part]} | ${result[$part]} | ${seconds[$part]} | ${keys[$part]} |"
    done
    for part in "${order[@]}"; do
      echo
      cat "$(section_of "$part")" 2>/dev/null
    done
  } >"$tmp" && mv -f "$tmp" "$summary"
}

# pytest_counts LOG: "N passed, N failed, ..." from the last pytest result line of LOG.
pytest_counts() {
  grep -E '(passed|failed|skipped|error|deselected|no tests ran)' "$1" | grep -E '^=+ .* in [0-9.]+s|^[0-9]+ [a-z]+.* in [0-9.]+s' | tail -n 1 | sed -E 's/^=+ //; s/ =+$//'
}
count_in() {  # count_in WORD TEXT: the number before WORD ("3 passed" -> 3), 0 if absent
  local n
  n=$(grep -oE "[0-9]+ $1" <<<"$2" | head -n 1 | cut -d' ' -f1)
  echo "${n:-0}"
}

skipped_for_time() {  # skipped_for_time PART TITLE: record a part that had no time left
  printf '## %s\n\nNOT RUN: no time left in the budget.\n' "$2" >"$(section_of "$1")"
  record "$1" "$2" "FAIL" 0 "not run: no time left"
}

# -- 0. environment ----------------------------------------------------------------------------

part_env() {
  local title="0 environment" log="$logs/0_environment.log" t0=$SECONDS limit gpus=0 verdict=PASS notes=""
  : >"$log"
  limit=$(limit_for env) || { skipped_for_time env "$title"; return; }
  say "$title: nvidia-smi, versions, MNIST-1D into the shared cache (limit $limit s)"
  run_logged "$log" $((limit < 20 ? limit : 20)) nvidia-smi
  local smi_rc=$rc
  run_logged "$work/environment.md" "$limit" "$PY" scripts/gpu_check.py environment
  local env_rc=$rc
  gpus=$(grep -oE '^gpu_count=[0-9]+' "$work/environment.md" | cut -d= -f2)
  gpus=${gpus:-0}
  echo "$gpus" >"$work/gpu_count"
  local remaining=$((limit - (SECONDS - t0)))
  ((remaining < 5)) && remaining=5
  run_logged "$log" "$remaining" "$PY" -c "
from gradbench.tasks.datasets import load_mnist1d
for n in (5000, 1000):  # the default suite's and the tests' sizes
    load_mnist1d(n)
print('MNIST-1D cached in', __import__('gradbench.tasks.datasets', fromlist=['cache_dir']).cache_dir())"
  local cache_rc=$rc
  ((env_rc == 0)) || { verdict=FAIL; notes+="torch/gradbench environment failed; "; }
  ((cache_rc == 0)) || notes+="MNIST-1D could not be generated (mnist1d missing? most parts need it); "
  if [[ $device == cuda ]]; then
    ((gpus > 0)) || { verdict=FAIL; notes+="no CUDA GPU visible to torch; "; }
    ((smi_rc == 0)) || notes+="nvidia-smi failed (rc $smi_rc); "
  fi
  local names
  names=$(grep -E '^\| cuda:[0-9]+ \|' "$work/environment.md" | cut -d'|' -f3 | cut -d, -f1 | sed 's/^ //' | sort | uniq -c | sed -E 's/^ *([0-9]+) /\1 x /' | paste -sd';' -)
  local torch_version cuda_version
  torch_version=$(grep -E '^\| torch \|' "$work/environment.md" | cut -d'|' -f3 | xargs)
  cuda_version=$(grep -E '^\| torch built with CUDA \|' "$work/environment.md" | cut -d'|' -f3 | xargs)
  {
    echo "## $title: $verdict"
    echo
    [[ -n $notes ]] && echo "Problems: ${notes%; }." && echo
    grep -vE '^(gpu_count=|\$ )' "$work/environment.md"
    echo
    echo "nvidia-smi (rc $smi_rc):"
    echo
    echo '~~~~text'
    sed -n '/^\$ nvidia-smi/,/^\$ /p' "$log" | sed '1d;$d' | head -n 40
    echo '~~~~'
    tail_of "$log" 5
  } >"$(section_of env)"
  record env "$title" "$verdict" "$((SECONDS - t0))" "${names:-no GPU}; torch $torch_version, CUDA $cuda_version; ${notes:-MNIST-1D cached}"
}

# -- 1 and 2. the CUDA tests, and the monitored step under sync debug mode ------------------------

SYNC_TESTS='never_synchronises|no_synchronisation'  # the tests of the step under set_sync_debug_mode("error")

part_tests() {
  local title="1 CUDA tests" log="$logs/1_cuda_tests.log" log_old="$logs/1_cuda_tests_older.log" t0=$SECONDS limit
  : >"$log"
  : >"$log_old"
  limit=$(limit_for tests) || { skipped_for_time tests "$title"; skipped_for_time sync "2 sync debug"; return; }
  say "$title: pytest -m cuda tests/ (limit $limit s)"
  run_logged "$log" "$limit" "$PY" -m pytest -p no:cacheprovider -v --tb=short -rfEs --durations=8 \
    --continue-on-collection-errors -m cuda tests/
  local rc_new=$rc out_new=$outcome counts_new
  counts_new=$(pytest_counts "$log")
  local rc_old=0 out_old="not run: no time left" counts_old=""
  if limit=$(limit_for tests_old); then
    say "$title: the older CUDA tests, -k cuda (limit $limit s)"
    run_logged "$log_old" "$limit" "$PY" -m pytest -p no:cacheprovider -v --tb=short -rfEs \
      tests/monitor/test_health_statistics.py tests/run/test_benchmark.py -k cuda
    rc_old=$rc out_old=$outcome
    counts_old=$(pytest_counts "$log_old")
  else
    rc_old=1
  fi
  local verdict=PASS note=""
  ((rc_new == 0 && rc_old == 0)) || verdict=FAIL
  # Skipped tests counted from pytest -v's lines: a module skipped whole while collecting (the Ray
  # tests without ray) is not a selected test, though the result line counts it.
  local tests_skipped
  tests_skipped=$(cat "$log" "$log_old" | grep -cE '^tests/.*::.* SKIPPED')
  if [[ $device == cuda ]]; then
    # On a GPU nothing may skip, and something must have run.
    if ((tests_skipped > 0)); then verdict=FAIL; note=" ($tests_skipped tests skipped on a GPU machine)"; fi
    (($(count_in passed "$counts_new") > 0)) || verdict=FAIL
  else
    note=" (dry run: the CUDA tests must collect and skip)"
    (($(count_in passed "$counts_new") == 0 && tests_skipped > 0)) || verdict=FAIL
  fi
  {
    echo "## $title: $verdict$note"
    echo
    echo "- \`pytest -m cuda tests/\`: $out_new, ${counts_new:-no result line}"
    echo "- older CUDA tests (\`-k cuda\` in tests/monitor/test_health_statistics.py, tests/run/test_benchmark.py): $out_old, ${counts_old:-no result line}"
    echo
    echo "Each test (from \`pytest -v\`):"
    echo
    echo '~~~~text'
    cat "$log" "$log_old" | grep -E '^tests/.*::.* (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)' | sed -E 's/ +\[ *[0-9]+%\]$//'
    echo '~~~~'
    tail_of "$log" 40
    tail_of "$log_old" 15
  } >"$(section_of tests)"
  record tests "$title" "$verdict" "$((SECONDS - t0))" "new: ${counts_new:-$out_new}; older: ${counts_old:-$out_old}"

  # Part 2 reads part 1's logs: the same tests, reported on their own.
  local lines failed passed skipped verdict2=PASS
  lines=$(cat "$log" "$log_old" | grep -E "^tests/.*($SYNC_TESTS).* (PASSED|FAILED|SKIPPED|ERROR)" | sed -E 's/ +\[ *[0-9]+%\]$//')
  passed=$(grep -c ' PASSED' <<<"$lines")
  failed=$(grep -cE ' (FAILED|ERROR)' <<<"$lines")
  skipped=$(grep -c ' SKIPPED' <<<"$lines")
  ((failed == 0 && passed + skipped > 0)) || verdict2=FAIL
  [[ $device == cuda ]] && ((skipped > 0 || passed == 0)) && verdict2=FAIL
  {
    echo "## 2 sync debug: $verdict2"
    echo
    echo "The timed step (CUDA events, forward, backward, GradientMonitor.step with clipping, optimizer step) under"
    echo "\`torch.cuda.set_sync_debug_mode(\"error\")\` for an MLP, a CNN and an RNN, each with SGD (no clipping), Adam"
    echo "(norm:1) and momentum (value:0.5) over two read-backs of the monitor's buffer; drawing a batch; and the"
    echo "older test on a small net. Run in part 1; $passed passed, $failed failed, $skipped skipped."
    echo
    echo '~~~~text'
    echo "${lines:-no such test ran}"
    echo '~~~~'
    local failures
    failures=$(cat "$log" "$log_old" | grep -E "^(FAILED|ERROR) .*($SYNC_TESTS)" | cut -c1-400)
    if [[ -n $failures ]]; then
      echo
      echo "Failures (the first line of each; the traceback, which names the synchronising call, is in part 1's log):"
      echo
      echo '~~~~text'
      echo "$failures"
      echo '~~~~'
    fi
  } >"$(section_of sync)"
  record sync "2 sync debug" "$verdict2" 0 "$passed passed, $failed failed, $skipped skipped"
}

# -- 3. the quick benchmarks, and why the timed call synchronises -----------------------------------

part_bench() {
  local title="3 benchmarks" log="$logs/3_benchmarks.log" log_sync="$logs/3_sync_timing.log" t0=$SECONDS limit
  : >"$log"
  : >"$log_sync"
  limit=$(limit_for bench) || { skipped_for_time bench "$title"; return; }
  local extra=()
  # On the CPU dry run each benchmark runs once, untimed: the plumbing, not numbers.
  [[ $device == cpu ]] && extra=(--benchmark-disable)
  say "$title: pytest bench/ --gb-quick --gb-device $device (limit $limit s)"
  run_logged "$log" "$limit" "$PY" -m pytest -p no:cacheprovider bench/ --gb-quick --gb-device "$device" \
    --benchmark-json="$logs/3_benchmarks.json" --benchmark-columns=min,median,mean,iqr,rounds "${extra[@]}"
  local rc_bench=$rc out_bench=$outcome counts
  counts=$(pytest_counts "$log")
  local rc_sync=1 out_sync="not run: no time left"
  if limit=$(limit_for sync_timing); then
    say "$title: synchronised vs unsynchronised host clock (limit $limit s)"
    run_logged "$log_sync" "$limit" "$PY" scripts/gpu_check.py sync-timing --device "$device"
    rc_sync=$rc out_sync=$outcome
  fi
  local verdict=PASS
  ((rc_bench == 0 && rc_sync == 0)) || verdict=FAIL
  local ratios
  ratios=$(grep -E '^\| (launch|compute|tiny)' "$log_sync" | awk -F'|' '{gsub(/ /, "", $5); split($2, a, ":"); gsub(/^ +/, "", a[1]); printf "%s%s %s", sep, a[1], $5; sep="; "}')
  {
    echo "## $title: $verdict"
    echo
    echo "- \`pytest bench/ --gb-quick --gb-device $device\`: $out_bench, ${counts:-no result line}; pytest-benchmark's JSON: \`$logs/3_benchmarks.json\`"
    echo "- one training step, host clock with and without \`torch.cuda.synchronize()\` after it ($out_sync):"
    echo
    sed -n '/^Median seconds/,$p' "$log_sync" | grep -v '^\$ '
    echo
    echo "An unsynchronised/synchronised ratio well below 1 is what pytest-benchmark's host clock would report without"
    echo "the synchronising call in TimedStep: the time to queue the kernels, not to run them."
    tail_of "$log" 45
    ((rc_sync == 0)) || tail_of "$log_sync" 20
  } >"$(section_of bench)"
  record bench "$title" "$verdict" "$((SECONDS - t0))" "${counts:-$out_bench}; unsync/sync: ${ratios:-$out_sync}"
}

# -- 4. the default suite on the device --------------------------------------------------------

part_suite() {
  local title="4 default suite" log="$logs/4_default_suite.log" db="$work/suite.db" t0=$SECONDS limit
  : >"$log"
  rm -f "$db"
  limit=$(limit_for suite) || { skipped_for_time suite "$title"; return; }
  local extra=()
  # The dry run: every cell of the default suite (named by its file, so --steps replaces each
  # grid's steps instead of defining a grid of its own), 20 steps each.
  [[ $device == cpu ]] && extra=(--steps 20 gradbench/suites/default.toml)
  say "$title: gradbench run --device $device into a fresh store (limit $limit s)"
  local t_run=$SECONDS
  run_logged "$log" "$limit" "${gb[@]}" run --device "$device" --db "$db" --no-progress "${extra[@]}"
  local rc_run=$rc out_run=$outcome wall=$((SECONDS - t_run))
  local line cells
  line=$(grep -E "^suite '.*': [0-9]+ cells" "$log" | tail -n 1)
  cells=$(grep -oE '[0-9]+ cells' <<<"$line" | cut -d' ' -f1)
  local rc_report=1 rc_store=1
  if [[ -f $db ]]; then
    run_logged "$work/report.md" 30 "${gb[@]}" report --db "$db"
    rc_report=$rc
    run_logged "$work/suite_store.md" 30 "$PY" scripts/gpu_check.py store "$db" --allow-diverged ${cells:+--expect "$cells"}
    rc_store=$rc
  fi
  local verdict=PASS
  ((rc_run == 0 && rc_report == 0 && rc_store == 0)) || verdict=FAIL
  local stored
  stored=$(grep -E '^runs: ' "$work/suite_store.md" 2>/dev/null)
  {
    echo "## $title: $verdict"
    echo
    echo "- \`${gb[*]} run --device $device --db $db${extra[*]:+ ${extra[*]}}\`: $out_run, ${wall} s wall (start-up included)"
    echo "- ${line:-no summary line (timed out or crashed)}"
    echo "- stored: ${stored:-nothing}; \`gradbench report\`: rc $rc_report"
    echo "- passes when every cell is stored and none failed: a diverged run is a result (the unclipped lr=1 cell"
    echo "  diverges for one seed of two on the CPU too, docs/default_table.md; on CUDA the batch order differs)"
    echo
    echo "\`gradbench report --db $db\`:"
    echo
    grep -v '^\$ ' "$work/report.md" 2>/dev/null | head -n 40
    echo
    echo "Runs as stored (scripts/gpu_check.py store):"
    echo
    grep -v '^\$ ' "$work/suite_store.md" 2>/dev/null | head -n 60
    tail_of "$log" 15
  } >"$(section_of suite)"
  record suite "$title" "$verdict" "$((SECONDS - t0))" "${stored:-nothing stored}; run: $out_run, ${wall} s wall"
}

# -- 5. the process pool on every visible GPU ----------------------------------------------------

part_pool() {
  local title="5 process pool" log="$logs/5_process_pool.log" db="$work/pool.db" t0=$SECONDS limit
  : >"$log"
  rm -f "$db"
  limit=$(limit_for pool) || { skipped_for_time pool "$title"; return; }
  local gpus cells args
  gpus=$(cat "$work/gpu_count" 2>/dev/null || echo 0)
  if [[ $device == cuda ]]; then
    cells=$((2 * gpus > 4 ? 2 * gpus : 4))  # at least two cells per worker: each worker is reused
    args=(--steps 300 --device cuda)
  else
    cells=4
    args=(--steps 20 --device cpu --workers 2)
  fi
  say "$title: $cells cells on --executor process, $device (limit $limit s)"
  run_logged "$log" "$limit" "${gb[@]}" run --task "mnist1d_mlp[depth=4,width=64,num_samples=1000]" --seeds "0-$((cells - 1))" \
    --executor process "${args[@]}" --db "$db" --no-progress
  local rc_run=$rc out_run=$outcome rc_store=1
  local check=(--expect "$cells")
  [[ $device == cuda ]] && check+=(--expect-gpus "$gpus")
  if [[ -f $db ]]; then
    run_logged "$work/pool_store.md" 30 "$PY" scripts/gpu_check.py store "$db" "${check[@]}"
    rc_store=$rc
  fi
  local verdict=PASS
  ((rc_run == 0 && rc_store == 0)) || verdict=FAIL
  local stored workers
  stored=$(grep -E '^runs: ' "$work/pool_store.md" 2>/dev/null)
  workers=$(sed -n '/^| worker pid/,$p' "$work/pool_store.md" 2>/dev/null | grep -E '^\| [0-9]+' | awk -F'|' '{gsub(/ /, "", $2); gsub(/ /, "", $3); printf "%sworker %s -> GPU %s", sep, $2, $3; sep=", "}')
  {
    echo "## $title: $verdict"
    echo
    echo "- \`${gb[*]} run --task mnist1d_mlp[depth=4,width=64,num_samples=1000] --seeds 0-$((cells - 1)) --executor process ${args[*]}\`: $out_run"
    echo "- stored: ${stored:-nothing}; visible GPUs: $gpus"
    echo
    grep -v '^\$ ' "$work/pool_store.md" 2>/dev/null | head -n 60
    tail_of "$log" 10
  } >"$(section_of pool)"
  record pool "$title" "$verdict" "$((SECONDS - t0))" "${stored:-nothing stored}; run: $out_run; ${workers:-no workers recorded}"
}

# -- the check ---------------------------------------------------------------------------------

say "gradbench GPU check on $device; summary: $summary; logs: $logs; budget $budget s"
write_summary
part_env
if [[ $device == cuda && ${result[env]} != PASS && $(cat "$work/gpu_count" 2>/dev/null || echo 0) == 0 ]]; then
  say "no CUDA GPU: the other parts cannot run (GB_CHECK_DEVICE=cpu runs them on the CPU)"
else
  for part in tests bench suite pool; do
    ((interrupted)) && break
    [[ -n ${runs_step[$part]:-} ]] || continue
    case "$part" in
      tests) part_tests ;;
      bench) part_bench ;;
      suite) part_suite ;;
      pool) part_pool ;;
    esac
  done
fi
write_summary
cat "$summary"
echo
status=0
for part in "${order[@]}"; do [[ ${result[$part]} == PASS ]] || status=1; done
((interrupted)) && status=1
say "done: $( ((status == 0)) && echo PASS || echo FAIL ); summary in $summary"
for part in "${order[@]}"; do printf '  %-20s %-5s %4s s  %s\n' "${titles[$part]}" "${result[$part]}" "${seconds[$part]}" "${keys[$part]}"; done
exit "$status"
