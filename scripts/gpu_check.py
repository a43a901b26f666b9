"""Helpers of scripts/gpu_check.sh, each printing Markdown for its summary.

    python3 scripts/gpu_check.py environment                  # versions, GPUs, mnist1d, gradbench
    python3 scripts/gpu_check.py sync-timing --device cuda    # synchronised vs unsynchronised host clock
    python3 scripts/gpu_check.py bench-table BENCH.json       # pytest-benchmark's JSON as one table
    python3 scripts/gpu_check.py store DB [--expect N] [--expect-gpus G] [--expect-precision P]   # runs, wall time, worker -> GPU

Run from the repository root with the repository on PYTHONPATH (gradbench need not be installed).
``store`` exits 1 unless every run is done (or diverged, with ``--allow-diverged``; there are ``--expect`` of them, and the workers
used ``--expect-gpus`` GPUs, one each; every run stored with precision ``--expect-precision``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections import Counter
from pathlib import Path


def environment() -> int:
    import torch

    import gradbench

    rows = [
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", torch.__version__),
        ("torch built with CUDA", str(torch.version.cuda)),
        ("cuDNN", str(torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)),
        ("CUDA available", str(torch.cuda.is_available())),
        ("CUDA_VISIBLE_DEVICES", str(os.environ.get("CUDA_VISIBLE_DEVICES"))),
        ("fp32 matmul precision", torch.get_float32_matmul_precision()),
        ("gradbench", f"{gradbench.__version__} ({Path(gradbench.__file__).parent})"),
    ]
    try:
        import mnist1d

        rows.append(("mnist1d", f"importable ({Path(mnist1d.__file__).parent})"))
    except ImportError as error:
        rows.append(("mnist1d", f"NOT importable: {error} (the MNIST-1D tasks, the default suite and most tests need it)"))
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    rows.append(("GPUs", str(count)))
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        rows.append((f"cuda:{index}", f"{props.name}, capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB"))
    print("| what | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"\ngpu_count={count}")  # read by the script
    return 0


def sync_timing(device_name: str, steps: int, repeats: int) -> int:
    """Host-clock time per training step with and without a device synchronisation after each
    step, and the CUDA-event time (the runner's clock) of the same step, on a launch-bound
    model (the benchmarks' 20 x 256 MLP, batch 64) and a compute-bound one (20 x 2048, batch
    1024). Without synchronisation the host clock measures how long it took to queue the
    kernels: on the compute-bound model a small fraction of the real step."""
    import torch

    from gradbench.grid import expand, parse_suite
    from gradbench.run import prepare
    from gradbench.run.benchmark import TimedStep
    from gradbench.run.timing import StepTimer

    torch.set_num_threads(1)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    models = (
        [("launch-bound: mnist1d_mlp 20 x 256, batch 64", "mnist1d_mlp[depth=20,width=256]", 64),
         ("compute-bound: mnist1d_mlp 20 x 2048, batch 1024", "mnist1d_mlp[depth=20,width=2048]", 1024)]
        if cuda
        else [("tiny (CPU dry run): mnist1d_mlp 2 x 32, batch 64", "mnist1d_mlp[depth=2,width=32,num_samples=1000]", 64)]
    )

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def host_clock(step: TimedStep) -> float:
        synchronize()
        times = []
        for _ in range(steps):
            args, _ = step.setup()  # untimed, as in pytest-benchmark; reads back a full monitor buffer
            start = time.perf_counter()
            step(*args)
            times.append(time.perf_counter() - start)  # what pytest-benchmark's host clock sees
        synchronize()
        return statistics.median(times)

    def event_clock(step: TimedStep) -> float:
        synchronize()
        timer = StepTimer(device)
        for _ in range(steps):
            args, _ = step.setup()
            timer.start()
            step(*args)
            timer.stop()
        return statistics.median(timer.collect())

    print(f"Median seconds per step over {steps} steps after 5 warm-up steps, median of {repeats} interleaved repeats, device {device}.\n")
    print("| model | host clock, synchronised (ms) | host clock, unsynchronised (ms) | unsynchronised / synchronised | CUDA events, no sync (ms) |")
    print("|---|---:|---:|---:|---:|")
    for label, task, batch in models:
        (cell,) = expand(parse_suite("").with_overrides({"tasks": [task], "batch_sizes": [batch], "steps": [1], "device": device_name}))
        # One prepared session per clock, each warmed up once (setup is the costly part).
        with_sync, without_sync = TimedStep(prepare(cell)), TimedStep(prepare(cell), synchronize=False)
        with_sync.run(5)
        without_sync.run(5)
        synced, unsynced, events = [], [], []
        for _ in range(repeats):
            synced.append(host_clock(with_sync))
            unsynced.append(host_clock(without_sync))
            if cuda:
                events.append(event_clock(without_sync))
        s, u = statistics.median(synced), statistics.median(unsynced)
        e = f"{1e3 * statistics.median(events):.3f}" if events else "n/a (CPU)"
        print(f"| {label} | {1e3 * s:.3f} | {1e3 * u:.3f} | {u / s:.3f} | {e} |")
    return 0


def bench_table(path: Path) -> int:
    """pytest-benchmark's JSON as one Markdown table: median step time and spread per benchmark."""
    if not path.is_file():
        print(f"no benchmark JSON at {path} (the benchmarks did not finish, or ran untimed)")
        return 1
    data = json.loads(path.read_text())
    info = data.get("machine_info", {}).get("gradbench", {})  # bench/conftest.py's environment record
    print(f"device {info.get('device')} ({info.get('device_name')}), torch {info.get('torch')}, CUDA {info.get('cuda')}\n")
    print("| group | benchmark | median (ms) | IQR (ms) | min (ms) | rounds |\n|---|---|---:|---:|---:|---:|")
    for bench in sorted(data.get("benchmarks", []), key=lambda b: (str(b.get("group")), b["name"])):
        stats = bench["stats"]
        group = str(bench.get("group")).replace("|", "/")  # groups read "optimizer | mlp"
        print(f"| {group} | {bench['name']} | {1e3 * stats['median']:.3f} | {1e3 * stats['iqr']:.3f} | {1e3 * stats['min']:.3f} | {stats['rounds']} |")
    return 0


def store(path: Path, expect: int | None, expect_gpus: int | None, allow_diverged: bool, expect_precision: str | None = None) -> int:
    """A store's runs, read with sqlite3 alone: status counts, wall time, which worker ran on
    which GPU (the environment each run stored), median step time, errors. Passes when every run
    is done (or diverged, a result, with ``allow_diverged``), there are ``expect`` of them, and (``expect_gpus``) each worker kept one GPU and
    the workers used ``expect_gpus`` different ones, and (``expect_precision``) every run was stored
    with that precision; the steps a loss scaler skipped are counted (schema 6 stores)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    extra = ", precision, skipped_steps" if "precision" in columns else ", NULL AS precision, NULL AS skipped_steps"
    runs = [dict(row) for row in connection.execute(f"SELECT key, label, status, error, env, wall_time_s{extra} FROM runs ORDER BY rowid")]
    medians = {
        key: statistics.median(times)
        for key in (r["key"] for r in runs)
        if (times := [row[0] for row in connection.execute("SELECT step_time_s FROM steps WHERE run_key = ? AND step_time_s IS NOT NULL", (key,))])
    }
    connection.close()
    statuses = Counter(r["status"] for r in runs)
    print(f"runs: {len(runs)}" + (f" (expected {expect})" if expect is not None else "") + "; " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    print(f"sum of the runs' wall times: {sum(r['wall_time_s'] for r in runs):.1f} s\n")
    workers: dict[tuple[object, object], list[str]] = {}
    print("| run | status | device | device name | CUDA_VISIBLE_DEVICES | worker pid | runs at once | median step (ms) | wall (s) |")
    print("|---|---|---|---|---|---|---:|---:|---:|")
    for run in runs:
        env = json.loads(run["env"])
        workers.setdefault((env.get("worker_pid"), env.get("cuda_visible_devices")), []).append(run["key"][:8])
        median = medians.get(run["key"])
        print(
            f"| {run['key'][:8]} {run['label']} | {run['status']} | {env.get('device')} | {env.get('device_name')} | {env.get('cuda_visible_devices')} "
            f"| {env.get('worker_pid')} | {env.get('concurrent_runs')} | {'' if median is None else f'{1e3 * median:.3f}'} | {run['wall_time_s']:.1f} |"
        )
    print("\nWorker -> GPU (from each run's stored environment):\n")
    print("| worker pid | CUDA_VISIBLE_DEVICES | runs |\n|---|---|---|")
    for (pid, gpu), keys in workers.items():
        print(f"| {pid} | {gpu} | {len(keys)}: {' '.join(keys)} |")
    for run in runs:
        if run["status"] != "done":
            print(f"\n{run['status']} {run['key'][:8]} {run['label']}: {run['error']}")
    finished = statuses.get("done", 0) + (statuses.get("diverged", 0) if allow_diverged else 0)
    ok = bool(runs) and finished == len(runs) and (expect is None or len(runs) == expect)
    if expect_precision is not None:
        precisions = Counter(str(r["precision"]) for r in runs)
        skipped = [r["skipped_steps"] or 0 for r in runs]
        print(f"\nprecisions stored: {', '.join(f'{n} {p}' for p, n in sorted(precisions.items()))} (expected {expect_precision})")
        matmul = Counter(str(json.loads(r["env"]).get("matmul_precision")) for r in runs)
        print(f"float32 matmul precision in the runs' environment: {', '.join(f'{n} {p}' for p, n in sorted(matmul.items()))}")
        if any(r["skipped_steps"] is not None for r in runs):
            print(f"loss scaler: {sum(skipped)} steps skipped over {len(runs)} runs (at most {max(skipped)} in one)")
        ok = ok and set(precisions) == {expect_precision}
    if expect_gpus is not None:
        gpus_of: dict[object, set[object]] = {}
        for pid, gpu in workers:
            gpus_of.setdefault(pid, set()).add(gpu)
        used = {gpu for pid, gpu in workers}
        pinned = all(len(gpus) == 1 for gpus in gpus_of.values()) and None not in used and len(used) == expect_gpus
        print(f"\nGPUs used: {len(used)} of {expect_gpus} visible; every worker on one GPU: {all(len(g) == 1 for g in gpus_of.values())}")
        ok = ok and pinned
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("environment", help="versions, GPUs, mnist1d, gradbench")
    timing = commands.add_parser("sync-timing", help="synchronised vs unsynchronised host clock for one training step")
    timing.add_argument("--device", default="cuda")
    timing.add_argument("--steps", type=int, default=20)
    timing.add_argument("--repeats", type=int, default=3)
    table = commands.add_parser("bench-table", help="pytest-benchmark's JSON as one Markdown table")
    table.add_argument("json", type=Path)
    reading = commands.add_parser("store", help="a store's runs: status, wall time, worker -> GPU")
    reading.add_argument("db", type=Path)
    reading.add_argument("--expect", type=int, default=None, help="the number of runs there should be")
    reading.add_argument("--allow-diverged", action="store_true", help="count diverged runs (results) as passing")
    reading.add_argument("--expect-gpus", type=int, default=None, help="the number of GPUs the workers should have used, one each")
    reading.add_argument("--expect-precision", default=None, help="the precision every run should be stored with (fp32, tf32, bf16, fp16)")
    args = parser.parse_args()
    if args.command == "environment":
        return environment()
    if args.command == "sync-timing":
        return sync_timing(args.device, args.steps, args.repeats)
    if args.command == "bench-table":
        return bench_table(args.json)
    return store(args.db, args.expect, args.expect_gpus, args.allow_diverged, args.expect_precision)


if __name__ == "__main__":
    sys.exit(main())
