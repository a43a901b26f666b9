"""The runner: ``train_step`` (the one timed function) and ``run_cell`` (one cell, one result).

``run_cell`` never raises for a problem inside the run: a NaN or Inf loss or gradient ends the
run as ``diverged`` (with the step, quantity and layer where it began), any other exception
ends it as ``failed`` with its message, and the sweep goes on. Only ``KeyboardInterrupt`` and
``SystemExit`` pass through. Under ``fp16`` a step the loss scaler skips is recorded, not
divergence (``GradientMonitor``'s ``scaler``); the run diverges when the loss goes non-finite or
a step is skipped at a scale of 1 or less.

A compiled cell (``Cell.compile``) compiles before its first timed step: ``warm_up`` runs the
steps that compile on the real model and batch with a throwaway monitor, then puts the weights,
optimizer, scaler and random state back as they were, so the run trains the same steps as an
eager one; the warm-up's time is stored apart (``RunResult.compile_time_s``). The optimizer step
stays eager (see ``prepare``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from gradbench.axes.devices import check_device
from gradbench.axes.optimizers import build_optimizer, get_optimizer
from gradbench.axes.precision import autocast, grad_scaler, matmul_record, matmul_settings
from gradbench.axes.schedules import build_schedule
from gradbench.axes.specs import parse_spec
from gradbench.grid.cell import Cell
from gradbench.monitor.gradient_monitor import GradientMonitor, MonitorHistory, NonFinite
from gradbench.monitor.jacobians import PROBE_EXAMPLES, jacobian_spectra
from gradbench.run.allocator import keep_freed_memory
from gradbench.run.environment import environment
from gradbench.run.memory import optimizer_state_bytes
from gradbench.run.result import Evaluation, RunResult, now
from gradbench.run.timing import StepTimer
from gradbench.tasks import TASKS, TaskConfig, TaskInstance
from gradbench.tasks.base import ORDER_CHOICES, ORDER_KNOB, RUNNER_KNOBS, LossFn, resolve_knobs
from gradbench.tasks.blocks import constant_prediction_loss
from gradbench.tasks.datasets import Dataset, on_device, standardized, validation_split
from gradbench.tasks.image_datasets import DataOptions

__all__ = [
    "RunResult", "Evaluation", "Session", "Batches", "prepare", "train_step", "closure_step", "mixed_precision_step", "warm_up", "run_cell", "evaluate",
    "StepLoop", "READBACK_STEPS", "WARMUP_STEPS",
]

# Steps between read-backs of the device-side records (and divergence checks).
READBACK_STEPS = 50
# Warm-up steps of a compiled cell: the first compiles the model's forward and backward, the
# second runs what the first compiled (and anything a guard sends back to compile).
WARMUP_STEPS = 2
_EVAL_CHUNK = 8192


def train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    monitor: GradientMonitor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """One optimizer step: forward, backward, record and clip, update.

    This is the one timed function and should do nothing unrelated to the optimization: no
    ``.item()``, no Python ``if`` on a tensor, no host-device synchronisation.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(inputs), targets)
    loss.backward()
    monitor.step(loss)
    optimizer.step()
    return loss


def mixed_precision_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    monitor: GradientMonitor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """``train_step`` with the forward pass and the loss under ``autocast()`` (``bf16``,
    ``fp16``) and, given a ``scaler`` (``fp16``), the loss scaled before backward and the
    gradients unscaled before the monitor's norms and clipping; ``scaler.step`` skips the update
    when they overflowed (it reads that flag back: torch's own synchronisation), and
    ``scaler.update`` adjusts the scale.
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss = loss_fn(model(inputs), targets)
    if scaler is None:
        loss.backward()
        monitor.step(loss)
        optimizer.step()
        return loss
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    monitor.step(loss)
    scaler.step(optimizer)
    scaler.update()
    return loss


def closure_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    monitor: GradientMonitor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """One step of an optimizer that re-evaluates the loss itself (L-BFGS): ``step(closure)``,
    the closure running forward and backward on this step's batch as often as the optimizer
    asks. The monitor records once per step, at the first evaluation (the gradient at the
    step's starting point), and every evaluation's gradients are clipped, so the optimizer only
    ever sees clipped gradients. Timed whole, as ``train_step`` is: one optimizer step.
    """
    evaluations = 0

    @torch.enable_grad()  # some optimizers (AliG) call it inside their own no_grad step
    def closure() -> torch.Tensor:
        nonlocal evaluations
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        if evaluations == 0:
            monitor.step(loss)
        else:
            monitor.clip()
        evaluations += 1
        return loss

    loss = optimizer.step(closure)  # type: ignore[arg-type]  # torch types closures as returning float; LBFGS takes tensors (its own docs do)
    assert isinstance(loss, torch.Tensor)  # the first evaluation's loss
    return loss


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, loss_fn: LossFn, step: int, train_time_s: float) -> Evaluation:
    """Loss on the training set, loss and accuracy on the test set and on the validation split
    where the dataset holds one (model in eval mode).

    The training loss is taken over ``data.train_eval_index`` where the dataset has one (a
    fixed subset the size of the test set, for the large image datasets), else over all of it.
    """
    was_training = model.training
    model.eval()
    try:

        def pass_over(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None) -> tuple[float, float | None]:
            count = x.shape[0] if index is None else index.shape[0]
            total_loss, correct = 0.0, 0
            for start in range(0, count, _EVAL_CHUNK):
                if index is None:
                    inputs, labels = x[start : start + _EVAL_CHUNK], y[start : start + _EVAL_CHUNK]
                else:  # gather one chunk at a time: no copy of the whole subset
                    rows = index[start : start + _EVAL_CHUNK]
                    inputs, labels = x[rows], y[rows]
                outputs = model(inputs)
                total_loss += float(loss_fn(outputs, labels)) * labels.shape[0]
                if data.num_classes is not None:
                    correct += int((outputs.argmax(dim=1) == labels).sum())
            accuracy = correct / count if data.num_classes is not None else None
            return total_loss / count, accuracy

        train_loss, _ = pass_over(data.x_train, data.y_train, data.train_eval_index)
        test_loss, test_accuracy = pass_over(data.x_test, data.y_test)
        validation_loss = validation_accuracy = None
        if data.x_val is not None and data.y_val is not None:
            validation_loss, validation_accuracy = pass_over(data.x_val, data.y_val)
    finally:
        model.train(was_training)
    return Evaluation(step, train_loss, test_loss, test_accuracy, train_time_s, validation_loss, validation_accuracy)


class Batches:
    """Mini-batches drawn by indexing on the device: a fresh permutation every epoch
    (``order="shuffled"``), or the training set in its stored order every epoch (``"fixed"``).
    An epoch's last incomplete batch is skipped, as ``drop_last`` does.

    ``batch_size=None`` gives the whole training set every step (full-batch optimizers).
    """

    def __init__(self, data: Dataset, batch_size: int | None, seed: int, device: torch.device, order: str = ORDER_CHOICES[0]) -> None:
        self.x, self.y = data.x_train, data.y_train
        self.count = self.x.shape[0]
        self.batch_size = batch_size
        if batch_size is not None and batch_size > self.count:
            raise ValueError(f"batch_size={batch_size} is larger than the training set ({self.count} examples)")
        if order not in ORDER_CHOICES:
            raise ValueError(f"invalid batch order {order!r}; choose from: {', '.join(ORDER_CHOICES)}")
        self.shuffled = order == "shuffled"
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.order = torch.empty(0, dtype=torch.long, device=device)
        self.position = self.count

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch_size is None:
            return self.x, self.y
        if self.position + self.batch_size > self.count:
            if self.shuffled:
                self.order = torch.randperm(self.count, generator=self.generator, device=self.device)
            elif self.order.numel() == 0:  # made once: the same order every epoch
                self.order = torch.arange(self.count, device=self.device)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.x[index], self.y[index]


def _build(cell: Cell, device: torch.device, data_options: DataOptions | None = None) -> TaskInstance:
    activation, activation_params = parse_spec(cell.activation) if cell.activation else (None, {})
    init, init_params = parse_spec(cell.init) if cell.init else (None, {})
    # A cell stores only the knobs of its identity (grid.keyed_knobs): fill in the rest.
    knobs = resolve_knobs(cell.task, dict(cell.task_knobs))
    for knob in RUNNER_KNOBS:  # the cell's batch_size field and Batches' order: not the task's
        knobs.pop(knob)
    config = TaskConfig(knobs, activation, activation_params, init, init_params, data_options or DataOptions.from_environment())
    instance = TASKS.get(cell.task).build(config)
    if cell.validation:
        # Held out before the data goes to the device, so the device copy is of the split data.
        instance.data = validation_split(instance.data, cell.validation)
    if instance.standardize:  # after the split: the held-out examples shape nothing
        instance.data = standardized(instance.data)
    instance.model.to(device)
    instance.data = on_device(instance.data, device)
    return instance


@dataclass
class Session:
    """Everything one cell trains with, built and on its device. Building it is setup: the
    runner and the benchmarks time only ``step``.

    Attributes:
        cell: The cell.
        device: Its device.
        task: The built task (model and data on the device).
        model: What the forward pass calls: ``task.model``, or its ``torch.compile``d wrapper.
        optimizer, monitor, batches: The optimizer, the gradient monitor (which also clips)
            and the batch source.
        scheduler: The learning-rate scheduler, stepped after each optimizer step outside the
            timed step (``None``: a constant learning rate).
        step_function: ``train_step``, ``closure_step`` for an optimizer that re-evaluates
            the loss itself, or ``mixed_precision_step`` under ``bf16`` / ``fp16`` (chosen once,
            not in every step).
        train_eval_modes: The optimizer has ``train()``/``eval()`` modes (Schedule-Free):
            ``evaluate`` runs between ``optimizer.eval()`` and ``optimizer.train()``.
        scaler: The loss scaler (``fp16``), else ``None``.
        new_monitor: Builds a monitor like ``monitor`` (a compiled cell's warm-up uses one
            and throws it away).
        compiled: What ``torch.compile`` compiled (``model``: its forward and backward); empty
            when eager.
        step: ``step(inputs, targets)``, one training step (the timed code): ``step_function``
            bound to the model, loss, optimizer and monitor when the session is made.
    """

    cell: Cell
    device: torch.device
    task: TaskInstance
    model: Callable[..., Any]
    optimizer: torch.optim.Optimizer
    monitor: GradientMonitor
    batches: Batches
    scheduler: Any = None
    step_function: Callable[..., torch.Tensor] = train_step
    train_eval_modes: bool = False
    scaler: torch.amp.GradScaler | None = None
    new_monitor: Callable[[], GradientMonitor] | None = None
    compiled: tuple[str, ...] = ()

    @property
    def lr(self) -> float:
        """The learning rate the next step uses (of the first parameter group; the cell's, for an
        optimizer whose groups hold none, as A2Grad's)."""
        return float(self.optimizer.param_groups[0].get("lr", self.cell.lr))

    def __post_init__(self) -> None:
        # The timed step, bound once: a step then costs no attribute lookups of its own.
        self.step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = functools.partial(
            self.step_function, self.model, self.task.loss_fn, self.optimizer, self.monitor
        )

    def evaluate(self, step: int, train_time_s: float) -> Evaluation:
        """``evaluate`` the model at this step, with the learning rate it trained with. An
        optimizer with train/eval modes (Schedule-Free) is switched to eval first, so the
        model holds the weights it would be used with (Schedule-Free's averaged ``x``, not the
        point its gradients are taken at), and back to train after. Not at step 0: nothing is
        averaged yet, and some (SPlus) have no averages to switch to before their first step."""
        if not self.train_eval_modes or step == 0:
            return evaluate(self.task.model, self.task.data, self.task.loss_fn, step, train_time_s)
        self.optimizer.eval()  # type: ignore[attr-defined]
        try:
            return evaluate(self.task.model, self.task.data, self.task.loss_fn, step, train_time_s)
        finally:
            self.optimizer.train()  # type: ignore[attr-defined]


def prepare(cell: Cell, *, compile_model: bool = False, data_options: DataOptions | None = None) -> Session:
    """Build a cell's model, data, optimizer, monitor and batches; set threads and seeds.

    Args:
        cell: The cell.
        compile_model: Compile as ``cell.compile`` does, whatever the cell says (the benchmarks'
            eager-against-compiled pairs). The first steps then compile: ``warm_up`` runs them
            untimed, or time them as warm-up, never as steps.
        data_options: Where real datasets live and whether they may be downloaded (default:
            ``$GRADBENCH_DATA`` or its default, no downloads). Not part of the cell's identity.

    ``tf32``'s matrix-product settings are process-wide: ``run_cell`` sets them around the run
    (``gradbench.axes.precision.matmul_settings``); other callers of ``prepare`` set them.
    """
    device = check_device(cell.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # allocations, streams and events of this run on its GPU
    torch.set_num_threads(cell.threads)
    torch.manual_seed(cell.seed)
    task = _build(cell, device, data_options)
    task.model.train()
    compiled = compile_model or cell.compile
    if compiled:
        # A fresh compile cache for each compiled run: runs in one process (the serial executor)
        # would otherwise pile variants of one forward onto torch's recompile limit, past which
        # it runs them eagerly without a word.
        torch._dynamo.reset()
    model = torch.compile(task.model) if compiled else task.model
    spec = get_optimizer(cell.optimizer)
    # Given the model, so that its options can split the parameters into groups (Muon's hidden
    # matrices, no weight decay on biases and norms).
    optimizer = build_optimizer(cell.optimizer, task.model, dict(cell.hyperparameters))
    if spec.train_eval_modes:  # Schedule-Free refuses to step until told it is training
        optimizer.train()  # type: ignore[attr-defined]
    closure = spec.needs_closure
    # The optimizer step stays eager: a compiled step guards on the identity of its state
    # tensors, which the first step creates, so it would compile again at the run's first two
    # steps (timed) unless the warm-up kept the state of steps the eager run never trains.
    what_compiled: tuple[str, ...] = ("model",) if compiled else ()
    scaler = grad_scaler(cell.precision, device)
    # The monitor sees the original module, so layer names do not carry the compile wrapper.
    # Its optimizer hooks measure update ratios; its activation hooks come and go around
    # detailed steps, which compiled code would not follow, so a compiled model records none.
    new_monitor = functools.partial(
        GradientMonitor,
        task.model,
        clip=cell.clip,
        every=cell.record_every,
        detail_every=cell.detail_every,
        buffer_steps=READBACK_STEPS,
        optimizer=optimizer,
        activations=not compiled,
        scaler=scaler,
    )
    monitor = new_monitor()
    batches = Batches(task.data, cell.batch_size, cell.seed, device, dict(cell.task_knobs).get(ORDER_KNOB, ORDER_CHOICES[0]))
    scheduler = build_schedule(cell.schedule, optimizer, cell.steps)
    step_function: Callable[..., torch.Tensor] = closure_step if closure else train_step
    if cell.precision in ("bf16", "fp16"):
        if closure:  # the forward passes of a closure optimizer's evaluations under autocast
            step_function = _autocast_closure_step(functools.partial(autocast, cell.precision, device))
        else:
            step_function = functools.partial(mixed_precision_step, autocast=functools.partial(autocast, cell.precision, device), scaler=scaler)
    return Session(cell, device, task, model, optimizer, monitor, batches, scheduler, step_function, spec.train_eval_modes, scaler, new_monitor, what_compiled)


def _autocast_closure_step(context: Callable[[], contextlib.AbstractContextManager[Any]]) -> Callable[..., torch.Tensor]:
    """``closure_step`` with every forward pass and its loss under autocast, as
    ``mixed_precision_step`` has them (``bf16``; ``fp16`` cannot drive a closure optimizer,
    which the grid refuses). Autocast computes the loss in float32: outside it, the loss of
    bfloat16 outputs would be bfloat16, and L-BFGS's line search would compare losses rounded
    to three digits."""

    def step(model: Callable[[torch.Tensor], torch.Tensor], loss_fn: LossFn, *args: Any) -> torch.Tensor:
        def under_autocast(inputs: torch.Tensor) -> torch.Tensor:
            with context():
                return model(inputs)

        def loss_under_autocast(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            with context():
                return loss_fn(outputs, targets)

        return closure_step(under_autocast, loss_under_autocast, *args)

    return step


def warm_up(session: Session, steps: int = WARMUP_STEPS) -> float:
    """Run the steps that compile a compiled session, untimed, and leave it as it was: the
    weights and buffers (copied in place: the compiled graph keeps its parameters), the
    optimizer's and scaler's state and the random state are put back, and the steps are
    recorded by a throwaway monitor built as the session's is. The batch is the first
    ``batch_size`` training examples, not drawn from ``session.batches``. Returns the seconds it
    took (device synchronised).
    """
    assert session.new_monitor is not None
    task = session.task
    model_state = copy.deepcopy(task.model.state_dict())
    # A new optimizer's state is empty (it fills at the first step; Schedule-Free's train()
    # leaves an empty entry per parameter): emptied again in place.
    optimizer_state = None if not any(session.optimizer.state.values()) else copy.deepcopy(session.optimizer.state_dict())
    # What the steps write into the parameter groups (Schedule-Free counts its steps there),
    # put back into the same group objects.
    groups = [{key: copy.deepcopy(value) for key, value in group.items() if key != "params"} for group in session.optimizer.param_groups]
    scaler_state = copy.deepcopy(session.scaler.state_dict()) if session.scaler is not None else None
    size = session.batches.batch_size or session.batches.count
    inputs, targets = session.batches.x[:size], session.batches.y[:size]
    gpus = [session.device.index if session.device.index is not None else torch.cuda.current_device()] if session.device.type == "cuda" else []
    synchronize = torch.cuda.synchronize if session.device.type == "cuda" else (lambda device: None)
    synchronize(session.device)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=gpus):
        monitor = session.new_monitor()
        try:
            for _ in range(steps):
                session.step_function(session.model, task.loss_fn, session.optimizer, monitor, inputs, targets)
            synchronize(session.device)
        finally:
            monitor.close()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        task.model.load_state_dict(model_state)
    if optimizer_state is None:
        for group, saved in zip(session.optimizer.param_groups, groups):
            group.update(saved)
        session.optimizer.state.clear()  # a combined optimizer's clears every inner state
    else:
        session.optimizer.load_state_dict(optimizer_state)
    if session.scaler is not None and scaler_state is not None:
        session.scaler.load_state_dict(scaler_state)
    return seconds


def run_cell(cell: Cell, *, data_options: DataOptions | None = None, on_steps: Callable[[int], None] | None = None) -> RunResult:
    """Train one cell and return its result; never raises for a failure inside the run.

    Args:
        cell: The run to perform.
        data_options: Where real datasets live and whether they may be downloaded (default:
            ``$GRADBENCH_DATA`` or its default, no downloads). Not part of the cell's identity.
        on_steps: Called with the number of steps done since the last call (progress bars).
    """
    result = RunResult(cell=cell, status="failed", started_at=now())
    wall_start = time.perf_counter()
    # The run sets torch's thread count, seeds and CUDA device; the caller gets its own back.
    threads = torch.get_num_threads()
    gpus: list[int] = []
    if cell.device.startswith("cuda") and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a bad device string fails inside, as a result
            index = torch.device(cell.device).index
            gpus = [index if index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=gpus), (torch.cuda.device(gpus[0]) if gpus else contextlib.nullcontext()), matmul_settings(cell.precision):
        try:
            if gpus:  # the run's peak: from here (model, data, optimizer, evaluations) to its end
                torch.cuda.reset_peak_memory_stats(gpus[0])
            _train(cell, result, on_steps, data_options)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # a failed cell is a result; the sweep goes on
            result.status = "failed"
            location = traceback.extract_tb(error.__traceback__)[-1]
            result.error = f"{type(error).__name__}: {error} (at {location.filename.rsplit('/', 1)[-1]}:{location.lineno})"
        finally:
            torch.set_num_threads(threads)
            if gpus:  # also for a failed run: an out-of-memory error is a cost too
                with contextlib.suppress(RuntimeError):
                    result.peak_memory_bytes = torch.cuda.max_memory_allocated(gpus[0])
    result.finished_at = now()
    result.wall_time_s = time.perf_counter() - wall_start
    return result


def _train(cell: Cell, result: RunResult, on_steps: Callable[[int], None] | None, data_options: DataOptions | None) -> None:
    malloc = keep_freed_memory()  # before anything is built: a step's large blocks stay for the next
    session = prepare(cell, data_options=data_options)
    result.env = environment(session.device)
    result.env["malloc"] = malloc or "default"
    result.env.update(matmul_record())  # the float32 matrix-product precision this run had
    result.env["autocast_dtype"] = {"bf16": "bfloat16", "fp16": "float16"}.get(cell.precision)
    if cell.compile:
        result.env["compiled"] = list(session.compiled)
        result.compile_time_s = warm_up(session)
    task, monitor = session.task, session.monitor
    result.metric, result.target = task.metric, task.target
    result.chance_loss = constant_prediction_loss(task)
    result.num_params = _layer_sizes(task.model, monitor)
    loop = StepLoop(session, result, on_steps)  # after prepare: its timer's CPU clock follows the run's threads
    result.env["step_cpu_clock"] = loop.timer.cpu_clock
    _record_jacobians(session, result, 0)
    result.evaluations.append(replace(session.evaluate(0, 0.0), lr=loop.last_lr))
    if not loop.run(1, cell.steps):
        return
    _count_state(session, result)  # state that grows (L-BFGS's history) counts at its largest
    result.history = monitor.history()
    result.status = "done"


class StepLoop:
    """The runner's loop over a session's steps: the loop ``run_cell`` runs, and the one the
    runner-overhead benchmark (``gradbench.run.benchmark``) times against a hand-written loop,
    so that what is measured is what runs.

    Each step: the batch is drawn, the step timed (``StepTimer``) and trained; then, outside the
    timed step, the optimizer state is counted after step 1, the scheduler steps, the Jacobians
    are taken where the cell asks for them, and at the monitor's read-back cadence, every
    ``eval_every`` steps, at the cell's last step and at the end of each ``run`` the records and
    step times are read back, the progress reported, and at an evaluation step the model
    evaluated.

    Args:
        session: The prepared cell (``prepare``).
        result: Where the step times, evaluations and Jacobians go (``run_cell``'s result).
        on_steps: Called with the number of steps done since its last call, at each read-back.
    """

    def __init__(self, session: Session, result: RunResult, on_steps: Callable[[int], None] | None = None) -> None:
        self.session, self.result, self.on_steps = session, result, on_steps
        self.timer = StepTimer(session.device)
        self.last_lr = session.lr  # the learning rate the last step trained with
        self.done = 0  # steps run so far
        self._reported = 0

    def run(self, first: int, last: int) -> bool:
        """Steps ``first`` to ``last`` (counted from 1 over the whole run; each call goes on
        where the last one stopped). Returns false when the run diverged (``result`` then says
        where, and holds the records up to that step).

        Raises:
            ValueError: if ``first`` is not the step after the last one run.
        """
        if first != self.done + 1:
            raise ValueError(f"StepLoop.run({first}, {last}): the next step is {self.done + 1}")
        session, result, timer = self.session, self.result, self.timer
        cell, monitor = session.cell, session.monitor
        # The loop's own work between steps is a few lines of Python: looked up once, not per step.
        next_batch, train, scheduler = session.batches.next, session.step, session.scheduler
        steps, eval_every, jacobian_every = cell.steps, cell.eval_every, cell.jacobian_every
        for step in range(first, last + 1):
            self.done = step
            inputs, targets = next_batch()
            timer.start()
            train(inputs, targets)
            timer.stop()
            if step == 1:  # most optimizers make their state at the first step; outside the timed step
                _count_state(session, result)
            if scheduler is not None:  # outside the timed step, as evaluation is
                self.last_lr = session.lr
                if step < steps:
                    scheduler.step()
            if jacobian_every:
                _record_jacobians(session, result, step)
            evaluation_due = step % eval_every == 0 or step == steps
            if monitor.flush_due or evaluation_due or step == last:
                history = monitor.flush()
                wall, cpu = timer.collect()
                result.step_times += wall
                result.step_cpu_times += cpu
                if self.on_steps:
                    self.on_steps(step - self._reported)
                    self._reported = step
                if history.nonfinite is not None:
                    _end_diverged(result, history)
                    return False
                if evaluation_due:
                    evaluation = replace(session.evaluate(step, sum(result.step_times)), lr=self.last_lr)
                    result.evaluations.append(evaluation)
                    if not math.isfinite(evaluation.train_loss):
                        # Finite batch losses but a non-finite full-set loss: weights overflowed.
                        history.nonfinite = NonFinite(step, "loss")
                        _end_diverged(result, history)
                        return False
        return True


def _count_state(session: Session, result: RunResult) -> None:
    """Keep the larger of the optimizer state's size so far and now (``gradbench.run.memory``)."""
    size = optimizer_state_bytes(session.optimizer, session.task.model.parameters())
    result.optimizer_state_bytes = max(size, result.optimizer_state_bytes or 0)


def _record_jacobians(session: Session, result: RunResult, step: int) -> None:
    """The Jacobians' singular values on the probe batch (the first training examples), with
    the monitor's hooks off (the probe's vector-Jacobian products would reach them), where the
    cell asks for them: after step 0, every ``jacobian_every`` steps and the last."""
    every, last = session.cell.jacobian_every, session.cell.steps
    if not every or (step % every != 0 and step != last):
        return
    probe = session.task.data.x_train[:PROBE_EXAMPLES]
    with session.monitor.paused():
        spectra = jacobian_spectra(session.task.model, probe)
    result.jacobians += [(step, index, spectrum) for index, spectrum in enumerate(spectra)]


def _end_diverged(result: RunResult, history: MonitorHistory) -> None:
    """Keep the records up to and including the first non-finite step; mark the run diverged."""
    nonfinite = history.nonfinite
    assert nonfinite is not None
    last = nonfinite.step
    history.truncate(last)
    del result.step_times[last:]  # step k's time is step_times[k - 1]
    del result.step_cpu_times[last:]
    result.jacobians = [record for record in result.jacobians if record[0] <= last]
    result.history = history
    result.nonfinite = nonfinite
    result.status = "diverged"


def _layer_sizes(model: nn.Module, monitor: GradientMonitor) -> list[int]:
    modules = dict(model.named_modules())
    sizes = []
    for name in monitor.layer_names:
        module = modules.get(name, model)
        sizes.append(sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad))
    return sizes
