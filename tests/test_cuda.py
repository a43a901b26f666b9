"""The CUDA paths, on a GPU: a stored CUDA run and its CUDA-event step times, the step timer
against a synchronised wall clock, the monitored step under ``torch.cuda.set_sync_debug_mode``
("error"), the process pool's one GPU per worker, and fp32 results on CUDA against the CPU's.

Every test here is marked ``cuda`` (``pytest -m cuda`` selects them, with any other test so
marked) and skips without CUDA. ``scripts/gpu_check.sh`` runs them on a GPU machine. What can be
checked on the CPU with fakes (the pool's pinning with fake GPU ids, the monitor's read-back
cadence) is tested in ``tests/sweep`` and ``tests/monitor``, not repeated here.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from gradbench.cli import main
from gradbench.grid import Cell, expand, parse_suite
from gradbench.plugins import load_plugins
from gradbench.run import RunContext, prepare, run_cell
from gradbench.run.timing import StepTimer
from gradbench.run.train import READBACK_STEPS, Batches
from gradbench.store import Store
from gradbench.sweep import ProcessExecutor, run_sweep
from gradbench.sweep.executor import visible_gpus
from gradbench.tasks import TASKS

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# One MNIST-1D size for every test here: the generated dataset is cached once (GRADBENCH_CACHE).
SAMPLES = "num_samples=1000"
MLP = f"mnist1d_mlp[depth=4,width=64,{SAMPLES}]"
# The three model families of the speed benchmarks: a deep MLP, the MNIST-1D paper's 1-D CNN,
# and a vanilla RNN reading MNIST-1D as a sequence (stacked single-layer nn.RNN, cuDNN's kernels).
MODELS = {"mlp": MLP, "cnn": f"mnist1d_cnn[{SAMPLES}]", "rnn": f"mnist1d_rnn[{SAMPLES}]"}


def _cell(task: str, device: str = "cuda", **overrides: object) -> Cell:
    (only,) = expand(parse_suite("").with_overrides({"tasks": [task], "device": device, **overrides}))
    return only


@contextlib.contextmanager
def _synchronisation_is_an_error() -> Iterator[None]:
    """Any host-device synchronisation inside the block raises (``torch.cuda.set_sync_debug_mode``)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -- a run on CUDA: stored done, timed with CUDA events ---------------------------------------


def test_a_cuda_run_is_stored_done_with_its_cuda_event_step_times(tmp_path, monkeypatch):
    """``gradbench run --device cuda``: every stored step time is the elapsed time of the step's
    pair of CUDA events (spied on), none a host-clock time."""
    event_times: list[float] = []

    class SpiedEvent(torch.cuda.Event):
        def elapsed_time(self, end_event):  # type: ignore[no-untyped-def]
            milliseconds = super().elapsed_time(end_event)
            event_times.append(milliseconds / 1000.0)
            return milliseconds

    monkeypatch.setattr(torch.cuda, "Event", SpiedEvent)
    db = tmp_path / "cuda.db"
    steps = READBACK_STEPS + 10  # a full read-back of the monitor's buffer, then a partial one
    code = main(["run", "--task", MLP, "--steps", str(steps), "--device", "cuda", "--db", str(db), "--no-progress"])
    assert code == 0
    with Store.open(db, readonly=True) as store:
        (run,) = store.runs()
        step_times = [row["step_time_s"] for row in store.curve(run["key"])]
    assert run["status"] == "done", run["error"]
    env = json.loads(run["env"])
    assert env["device"].startswith("cuda") and env["device_name"] == torch.cuda.get_device_name()
    assert len(step_times) == steps and all(t > 0 for t in step_times)
    assert step_times == pytest.approx(event_times, rel=1e-9)


def test_a_cuda_run_records_its_peak_memory_and_adams_state_on_the_gpu():
    """The peak holds at least the model, Adam's two moments and its data; the state count is the
    same independent count as on the CPU (the step counters stay 0-d float32 tensors)."""
    parameters = [p for p in prepare(_cell(MLP, optimizers=["adam"])).model.parameters() if p.requires_grad]
    elements = sum(p.numel() for p in parameters)
    result = run_cell(_cell(MLP, optimizers=["adam"], steps=[5]))
    assert result.status == "done", result.error
    assert result.optimizer_state_bytes == 2 * elements * 4 + len(parameters) * 4
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes >= 3 * elements * 4


def test_the_step_timer_agrees_with_a_synchronised_wall_clock():
    """``StepTimer`` on CUDA, read only once after several steps as the runner does, gives each
    step the time its kernels took: the same, within reason, as a host clock around the same
    kernels with a synchronisation before and after. (A host clock without synchronisation
    would see only the microseconds it takes to queue them.) Not a speed claim: two clocks
    measuring the same ~10 ms of matrix products, compared with generous bounds."""
    device = torch.device("cuda")
    a = torch.randn(4096, 4096, device=device)
    out = torch.empty_like(a)

    def step() -> None:
        for _ in range(4):
            torch.mm(a, a, out=out)

    timer = StepTimer(device)
    for _ in range(3):  # warm-up: cuBLAS handles, clocks
        step()
    torch.cuda.synchronize()

    for _ in range(5):  # as the runner times: no synchronisation between steps
        timer.start()
        step()
        timer.stop()
    unsynchronised = timer.collect()

    walls, bracketed = [], []
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        timer.start()
        step()
        timer.stop()
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - start)
        bracketed += timer.collect()

    assert len(unsynchronised) == 5 and all(t > 0 for t in unsynchronised + bracketed)
    # The events lie inside the synchronised bracket: never longer than it (0.1 ms for clocks).
    assert all(event <= wall + 1e-4 for event, wall in zip(bracketed, walls)), (bracketed, walls)
    ratio = statistics.median(unsynchronised) / statistics.median(walls)
    assert 0.5 < ratio < 1.5, f"CUDA-event step {statistics.median(unsynchronised):.6f} s vs synchronised wall clock {statistics.median(walls):.6f} s"


def test_collecting_the_step_times_is_the_only_synchronisation():
    """Start and stop record events without waiting for the device; collect waits once."""
    device = torch.device("cuda")
    timer = StepTimer(device)
    x = torch.randn(256, 256, device=device)
    with _synchronisation_is_an_error():
        for _ in range(3):
            timer.start()
            x = x @ x / 256
            timer.stop()
    assert len(timer.collect()) == 3


# -- the monitored step under sync debug mode --------------------------------------------------

# Optimizer and clipping together: each clip mode with a different optimizer (plain SGD's
# update, Adam's per-parameter state, momentum's buffers), so three settings cover them all.
STEP_SETTINGS = [("sgd", "none"), ("adam", "norm:1"), ("momentum", "value:0.5")]


@pytest.mark.parametrize("optimizer, clip", STEP_SETTINGS, ids=[f"{o}-{c}" for o, c in STEP_SETTINGS])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_monitored_step_never_synchronises(model, optimizer, clip):
    """The runner's timed region (timer events, forward, backward, ``GradientMonitor.step`` with
    its clipping, the optimizer's step) under ``set_sync_debug_mode("error")`` for more than two
    read-backs of the monitor's buffer: gradient norms every step, weight norms, update ratios
    and activation statistics every 5th, the read-back (a synchronisation by design) between
    steps, as ``run_cell`` does it."""
    steps = 2 * READBACK_STEPS + 1
    session = prepare(_cell(MODELS[model], optimizers=[optimizer], clips=[clip], steps=[steps], record_every=1, detail_every=5))
    timer = StepTimer(session.device)
    times: list[float] = []
    for step in range(1, steps + 1):
        inputs, targets = session.batches.next()
        try:
            with _synchronisation_is_an_error():
                timer.start()
                session.step(inputs, targets)
                timer.stop()
        except RuntimeError as error:  # the traceback above this one names the synchronising call
            kind = "a detailed step" if step % 5 == 1 else "a gradient-norm step"
            raise AssertionError(f"step {step} ({kind}) synchronised: {error}") from error
        if session.monitor.flush_due:
            session.monitor.flush()
            times += timer.collect()
    history = session.monitor.flush()
    times += timer.collect()
    assert len(times) == steps and all(t > 0 for t in times)
    assert history.grad_steps == list(range(1, steps + 1))
    assert len(history.losses) == steps and all(math.isfinite(loss) for loss in history.losses)
    assert history.nonfinite is None


def test_drawing_a_batch_never_synchronises():
    """Batches are drawn on the device between steps (a fresh permutation each epoch): waiting
    for the device there would leave it idle while the host queues the next step."""
    session = prepare(_cell(MLP, batch_sizes=[256], steps=[1]))
    batches = session.batches
    assert isinstance(batches, Batches)
    draws = 3 * (batches.count // 256) + 1  # across three epoch boundaries
    with _synchronisation_is_an_error():
        drawn = [batches.next() for _ in range(draws)]
    assert all(x.shape[0] == 256 and x.is_cuda for x, _ in drawn)


# -- the process pool: one GPU per worker ------------------------------------------------------

PROBE_TASK = "cuda_probe_linreg"


def _probe_plugin(folder: Path) -> Path:
    """A plugin registering ``linreg`` under another name, whose build fails unless the worker
    sees exactly one GPU and has ``CUDA_VISIBLE_DEVICES`` set (the run is then stored as failed,
    with what the worker saw)."""
    path = folder / "cuda_probe_plugin.py"
    path.write_text(
        f"""
import os
from dataclasses import replace
import torch
from gradbench.tasks import TASKS, register_task

linreg = TASKS.get("linreg")

def build(config):
    count, visible = torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")
    if count != 1 or not visible:
        raise RuntimeError(f"the worker sees {{count}} GPUs with CUDA_VISIBLE_DEVICES={{visible!r}}")
    return linreg.build(config)

if {PROBE_TASK!r} not in TASKS:
    register_task(replace(linreg, name={PROBE_TASK!r}, description="linreg that checks its worker's GPUs", build=build))
"""
    )
    return path


def test_the_process_pool_gives_every_visible_gpu_one_worker_that_sees_only_it(tmp_path):
    gpus = visible_gpus()
    plugin = str(_probe_plugin(tmp_path))
    load_plugins((plugin,))  # the driver checks the grid's task names
    try:
        cells = expand(parse_suite(f'tasks = ["{PROBE_TASK}"]\nsteps = 20\nseeds = {list(range(2 * len(gpus)))}\ndevice = "cuda"'))
        with Store.open(tmp_path / "pool.db", create=True) as store:
            run_sweep(cells, store, executor=ProcessExecutor(), job=RunContext(plugins=(plugin,)), progress=False)
            runs = store.runs()
    finally:
        TASKS.unregister(PROBE_TASK)
    assert len(runs) == len(cells)
    assert all(run["status"] == "done" for run in runs), [run["error"] for run in runs]
    envs = [json.loads(run["env"]) for run in runs]
    gpu_of_worker: dict[int, set[str]] = {}
    for env in envs:
        gpu_of_worker.setdefault(env["worker_pid"], set()).add(env["cuda_visible_devices"])
    assert all(len(pinned) == 1 for pinned in gpu_of_worker.values()), gpu_of_worker  # a worker keeps its GPU
    assert sorted(g for pinned in gpu_of_worker.values() for g in pinned) == sorted(gpus)  # one worker per GPU
    assert all(env["concurrent_runs"] == len(gpus) for env in envs)


# -- fp32 on CUDA against the CPU ---------------------------------------------------------------

# The same run on both devices: the model initialised on the CPU from the seed, then moved; the
# batches in the dataset's stored order (order=fixed), since the CPU's and the GPU's random
# generators draw different permutations from one seed. What still differs is the order in
# which cuBLAS and the CPU's BLAS sum the products (TF32 is off for fp32 matrix products by
# default, checked below): about sqrt(K) * 2^-24, 1e-6 relative, per matrix product of depth
# K = 40-64. Thirty SGD steps at lr 0.1 carry that forward without blowing it up (on the CPU,
# weights perturbed by 1e-5 relative move these 30 losses by at most 3.5e-6 relative), so the
# losses and per-layer gradient norms agree to ~1e-5; rtol 1e-4 leaves ten times that. Any real
# difference (a wrong kernel, a skipped clip, TF32's 10-bit mantissa) is 1e-3 or more.
RTOL, ATOL = 1e-4, 1e-6


def test_fp32_results_on_cuda_agree_with_the_cpu():
    assert torch.get_float32_matmul_precision() == "highest", "TF32 is on for fp32 matrix products: set it back to 'highest'"
    task = f"mnist1d_mlp[depth=4,width=64,{SAMPLES},order=fixed]"
    settings = {"steps": [30], "record_every": 1, "eval_every": 10, "clips": ["norm:1"]}
    cpu, cuda = (run_cell(_cell(task, device, **settings)) for device in ("cpu", "cuda"))
    assert cpu.status == cuda.status == "done", (cpu.error, cuda.error)
    assert cuda.env["device"].startswith("cuda")
    assert cuda.history.losses == pytest.approx(cpu.history.losses, rel=RTOL, abs=ATOL)
    for cuda_row, cpu_row in zip(cuda.history.layer_grad_norms, cpu.history.layer_grad_norms, strict=True):
        assert cuda_row == pytest.approx(cpu_row, rel=RTOL, abs=ATOL)
    assert [e.test_loss for e in cuda.evaluations] == pytest.approx([e.test_loss for e in cpu.evaluations], rel=RTOL, abs=ATOL)


@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_a_cuda_run_under_each_precision_is_done_and_stored_with_it(precision, tmp_path):
    """tf32, bf16 and fp16 on the GPU: done, stored with the precision, the environment naming
    the matmul precision and autocast dtype; fp16 with its scaler's scale every step."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    cell = _cell(MLP, steps=[60], precision=precision, optimizers=["adam"])
    result = run_cell(cell)
    assert result.status == "done", result.error
    assert result.env["matmul_precision"] == ("high" if precision == "tf32" else "highest")
    assert result.env["autocast_dtype"] == {"tf32": None, "bf16": "bfloat16", "fp16": "float16"}[precision]
    assert result.history.losses[-1] < result.history.losses[0]
    if precision == "fp16":
        assert result.history.scale_steps == list(range(1, 61)) and result.history.loss_scales[0] == 2.0**16
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(result)
        row = store.runs()[0]
        assert row["precision"] == precision and (row["skipped_steps"] is not None) == (precision == "fp16")


def test_a_compiled_cuda_run_matches_eager(tmp_path):
    eager = _cell(MLP, steps=[30], optimizers=["adam"], record_every=1)
    compiled = run_cell(Cell.from_config({**eager.config(), "compile": True}))
    reference = run_cell(eager)
    assert compiled.status == "done", compiled.error
    assert compiled.compile_time_s is not None and compiled.compile_time_s > 0
    assert compiled.history.losses == pytest.approx(reference.history.losses, abs=1e-4)  # TF32 off; inductor reorders float32 sums
