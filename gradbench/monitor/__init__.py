"""Watching gradients while a network trains, and what the records say.

Modules: ``gradient_monitor`` (``GradientMonitor``: the loss, per-layer gradient norms, clipping,
weight norms, update ratios and activation statistics, kept on the device and read back in one
transfer per buffer), ``layer_norms`` (a model's layers, and per-layer norms combined on the host
from the per-tensor norms of one fused device operation), ``activation_stats`` (forward hooks on activations: dead and saturated fractions,
mean, std), ``history`` (the records on the host, where NaN/Inf began) and ``diagnosis``
(verdicts such as ``vanishing`` or ``dead_units``, with their numbers).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.monitor.diagnosis import VERDICTS, RunHealth, Thresholds, Verdict, diagnose, health_from_history, parse_thresholds
    from gradbench.monitor.gradient_monitor import DEFAULT_EVERY, DETAIL_FACTOR, GradientMonitor
    from gradbench.monitor.history import ActivationSite, MonitorHistory, NonFinite
    from gradbench.monitor.layer_norms import model_layers

__getattr__, __dir__, __all__ = attach(__name__, __file__)
