"""What a grid varies (and the device it runs on), and how each value is named.

Modules: ``registry`` (the generic name -> entry registry: unknown names get one error with the
choices and a did-you-mean), ``specs`` (the ``name[key=value,...]`` syntax of the CLI, suite
files and labels), ``optimizers``, ``schedules`` (learning-rate schedules), ``activations``,
``clipping``, ``inits`` (initialisers), ``devices`` (``cpu``, ``cuda``, ``cuda:N``) and ``precision``
(``fp32``, ``tf32``, ``bf16``, ``fp16``, and whether ``torch.compile`` can compile here).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.axes.activations import ACTIVATIONS, activation_gain, build_activation, list_activations, register_activation
    from gradbench.axes.clipping import CLIPS, Clipping, list_clips, parse_clipping
    from gradbench.axes.devices import check_device, parse_device
    from gradbench.axes.inits import INITS, initialise, list_inits, register_init
    from gradbench.axes.precision import DEFAULT_PRECISION, PRECISIONS, autocast, check_compile, check_precision, grad_scaler, matmul_settings
    from gradbench.axes.optimizers import OPTIMIZERS, build_optimizer, list_optimizers, register_optimizer, resolve_hyperparameters
    from gradbench.axes.registry import Registry
    from gradbench.axes.schedules import SCHEDULES, build_schedule, list_schedules, register_schedule
    from gradbench.axes.specs import format_spec, parse_spec

__getattr__, __dir__, __all__ = attach(__name__, __file__)
