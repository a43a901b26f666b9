"""What one cell produced: ``RunResult`` (status, evaluations, the monitor's history, step
times, environment) and its summary metrics. Torch-free, so the store, the executors and the
reports can hold results without importing torch."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from gradbench.monitor.history import MonitorHistory, NonFinite, first_last_ratio

if TYPE_CHECKING:
    from gradbench.grid.cell import Cell
    from gradbench.monitor.jacobians import JacobianSpectrum

__all__ = ["Evaluation", "RunResult", "now"]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")  # ordering runs that overlap in time (pooled workers)


@dataclass(frozen=True)
class Evaluation:
    """Metrics on the full training and test sets (and the validation split, where the cell
    holds one out) after ``step`` optimizer steps."""

    step: int
    train_loss: float
    test_loss: float
    test_accuracy: float | None
    train_time_s: float  # time spent in train_step so far
    validation_loss: float | None = None
    validation_accuracy: float | None = None
    lr: float | None = None  # the learning rate the last step used (step 0: the first step's)


@dataclass
class RunResult:
    """Everything one cell produced; the store saves it in one transaction.

    Attributes:
        cell: The cell that ran.
        status: ``done``, ``diverged`` or ``failed``.
        metric, target: The task's target metric and value.
        chance_loss: The training loss of the best constant prediction (``None``: unknown),
            for the ``not_learning`` verdict.
        evaluations: Train/test metrics at step 0, every ``eval_every`` steps, and at the end.
        history: The monitor's loss curve and per-layer gradient norms.
        step_times: Seconds per training step, in step order: wall time on the CPU, CUDA-event
            time on CUDA.
        step_cpu_times: The CPU time of each step in seconds, in step order, on CPU runs
            (``env["step_cpu_clock"]`` names the clock: ``thread_time`` with one torch thread,
            ``process_time`` with more); empty on CUDA. Other processes on the machine do not
            inflate it as they do the wall time.
        nonfinite: Where a NaN or Inf first appeared (``diverged`` runs).
        error: ``ExceptionType: message`` for ``failed`` runs.
        env: The environment (torch version, device name, threads, dtype, ...).
        optimizer_state_bytes: Bytes of the tensors the optimizer keeps in its state, the larger
            of the counts after the first and the last step (``gradbench.run.memory``: each
            storage once, parameters and gradients excluded, non-tensor state 0); ``None`` for
            a run that failed before its first step.
        peak_memory_bytes: On CUDA, the most memory the process had allocated on the run's GPU
            during the run (``torch.cuda.max_memory_allocated``, reset when the run starts, so
            it includes what the process already held: cached datasets of earlier runs);
            ``None`` on the CPU.
        compile_time_s: A compiled run's warm-up, in seconds: the steps that compiled the
            model and the optimizer step, before the first timed step (``None``: eager).
        jacobians: ``(step, site index, spectrum)`` of the layer Jacobians' singular values,
            where the cell asked for them (``jacobian_every``); a ``None`` spectrum for a site
            too wide to take.
    """

    cell: Cell
    status: str
    metric: str | None = None
    target: float | None = None
    chance_loss: float | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    history: MonitorHistory | None = None
    step_times: list[float] = field(default_factory=list)
    step_cpu_times: list[float] = field(default_factory=list)
    num_params: list[int] = field(default_factory=list)
    nonfinite: NonFinite | None = None
    error: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    jacobians: list[tuple[int, int, JacobianSpectrum | None]] = field(default_factory=list)
    optimizer_state_bytes: int | None = None
    peak_memory_bytes: int | None = None
    compile_time_s: float | None = None
    started_at: str = ""
    finished_at: str = ""
    wall_time_s: float = 0.0

    @property
    def steps_run(self) -> int:
        return len(self.step_times)

    def metrics(self) -> dict[str, float | int | None]:
        """Summary numbers: final losses and accuracy, steps and time to target, step time (wall
        and, on the CPU, CPU), first-to-last-layer gradient ratio, optimizer state and (CUDA)
        peak memory."""
        final = self.evaluations[-1] if self.evaluations and self.status == "done" else None
        steps_to_target = time_to_target = None
        for evaluation in self.evaluations:
            value = evaluation.test_accuracy if self.metric == "accuracy" else evaluation.test_loss
            if self.target is not None and value is not None and math.isfinite(value):
                if (value >= self.target) if self.metric == "accuracy" else (value <= self.target):
                    steps_to_target, time_to_target = evaluation.step, evaluation.train_time_s
                    break
        return {
            "steps_run": self.steps_run,
            "final_train_loss": final.train_loss if final else None,
            "final_test_loss": final.test_loss if final else None,
            "final_test_accuracy": final.test_accuracy if final else None,
            "steps_to_target": steps_to_target,
            "time_to_target_s": time_to_target,
            "median_step_time_s": statistics.median(self.step_times) if self.step_times else None,
            "median_step_cpu_s": statistics.median(self.step_cpu_times) if self.step_cpu_times else None,
            "total_train_time_s": sum(self.step_times),
            "grad_ratio_first_last": self.grad_ratio_first_last(),
            "final_validation_loss": final.validation_loss if final else None,
            "final_validation_accuracy": final.validation_accuracy if final else None,
            "optimizer_state_bytes": self.optimizer_state_bytes,
            "peak_memory_bytes": self.peak_memory_bytes,
        }

    def grad_ratio_first_last(self) -> float | None:
        """||grad first layer|| / ||grad last layer|| early in training: the median over the
        first tenth of the recorded steps (at least one).

        Early, because that is when vanishing gradients decide whether the lower layers learn;
        later a run may sit on a plateau where every gradient is tiny and the ratio says little.
        Far below 1 the lower layers learn more slowly than the top (vanishing); far above 1 the
        gradient grows on its way down (exploding).
        """
        if self.history is None:
            return None
        return first_last_ratio(self.history.layer_grad_norms)
