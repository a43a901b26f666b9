"""One cell, one result.

Modules: ``train`` (``prepare`` a cell's model, data and optimizer; ``train_step``, the only
timed code, and ``mixed_precision_step`` under autocast and a loss scaler; ``warm_up``, a compiled
cell's untimed compilation; ``run_cell``), ``result`` (``RunResult`` and its summary metrics), ``context``
(``RunContext``: plugins and data options, what an executor hands each worker), ``timing``
(per-step timers: wall and CPU clocks, or CUDA events), ``environment`` (what a timing was measured
on) and ``benchmark`` (the training step as a pytest-benchmark target).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.run.context import RunContext
    from gradbench.run.result import Evaluation, RunResult
    from gradbench.run.train import READBACK_STEPS, Batches, Session, StepLoop, evaluate, mixed_precision_step, prepare, run_cell, train_step, warm_up

__getattr__, __dir__, __all__ = attach(__name__, __file__)
