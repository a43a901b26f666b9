"""Numeric precision of a run: ``fp32``, ``tf32``, ``bf16`` or ``fp16``, and compiled steps.

- ``fp32``: full float32; float32 matrix products at ``highest`` precision (torch's default),
  whatever the process set before.
- ``tf32``: float32 weights and activations, matrix products and convolutions on TensorFloat-32
  tensor cores (``torch.backends.cuda.matmul.allow_tf32``, ``set_float32_matmul_precision("high")``,
  ``torch.backends.cudnn.allow_tf32``). A CUDA mode: refused on the CPU.
- ``bf16``: ``torch.autocast`` to bfloat16 around the forward pass and the loss, float32 weights
  and optimizer state. Runs on the CPU too (CI tests it). On CUDA it needs a GPU with bfloat16
  (``torch.cuda.is_bf16_supported()``).
- ``fp16``: ``torch.autocast`` to float16 with a ``torch.amp.GradScaler``: the loss is scaled
  before backward, the gradients unscaled before the monitor's norms and clipping, and a step
  whose gradients overflowed is skipped by the scaler (which lowers the scale). Runs on CUDA
  only: torch's CPU autocast accepts float16, but without hardware float16 arithmetic a CPU
  runs it many times slower than float32 (15x for an MLP step on the 2-core development
  machine), which measures nothing anyone trains with. The runner itself does not refuse it
  (the tests drive the scaler path on the CPU with a hand-made cell).

Names are torch-free (suites and the store read them); what touches torch imports it inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradbench.axes.specs import shown

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS", "DEFAULT_PRECISION", "MIN_LOSS_SCALE", "check_precision", "check_compile", "autocast", "grad_scaler", "scaler_state", "matmul_settings", "matmul_record",
]

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DEFAULT_PRECISION = "fp32"
_AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# A step the scaler skips at a scale this low or lower is divergence: at scale 1 the gradients
# overflow float16 at their true size, so lowering the scale further cannot save the run.
MIN_LOSS_SCALE = 1.0


def check_precision(name: Any, device: torch.device | None) -> str:
    """``name`` if it is a precision this device runs (``device=None``: the name only, for
    cells that run elsewhere).

    Raises:
        ValueError: naming the bad value and the choices.
    """
    if name not in PRECISIONS:
        raise ValueError(f"invalid precision {shown(name)}; choose from: {', '.join(PRECISIONS)}")
    if device is None:
        return str(name)
    import torch

    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device (it runs with float16 arithmetic and a loss scaler), not {device.type}; on the CPU choose from: fp32, bf16")
    if name == "tf32" and device.type != "cuda":
        raise ValueError(f"precision 'tf32' is a CUDA tensor-core mode, not available on {device.type}; on the CPU choose from: fp32, bf16")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16' asked for but {torch.cuda.get_device_name(device)} has no bfloat16 support; choose from: fp32, tf32, fp16")
    return str(name)


def check_compile(value: Any, device: torch.device | None) -> bool:
    """``value`` as a bool if ``torch.compile`` can compile on this device (``device=None``:
    the value only).

    Raises:
        ValueError: for a value that is not a boolean, or compilation torch cannot do here
            (no dynamo on this Python, no C compiler for the CPU backend, no Triton for CUDA).
    """
    if not isinstance(value, bool):
        raise ValueError(f"invalid compile {shown(value)}: must be true or false")
    if not value or device is None:
        return value
    import shutil

    import torch

    if not torch._dynamo.is_dynamo_supported():
        raise ValueError(f"compile asked for but torch.compile is not supported on this Python ({torch.__version__}); choose from: false")
    if device.type == "cpu" and not any(shutil.which(name) for name in ("cc", "gcc", "clang", "g++", "c++")):
        raise ValueError("compile asked for but no C compiler (cc, gcc, clang) is on PATH for torch.compile's CPU backend; choose from: false")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ValueError("compile asked for but Triton is not installed for torch.compile's CUDA backend; choose from: false")
    return value


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's autocast context: to bfloat16 or float16, or none."""
    import torch

    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A ``GradScaler`` for ``fp16`` (torch's defaults: initial scale 2**16, halved at an
    overflow, doubled after 2000 steps without one), else ``None``."""
    import torch

    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def matmul_record() -> dict[str, Any]:
    """The float32 matrix-product settings in force: stored with every run."""
    import torch

    try:
        precision = torch.get_float32_matmul_precision()
    except RuntimeError:  # the process mixed torch's legacy and newer precision settings
        precision = f"cuda {torch.backends.cuda.matmul.fp32_precision}, cpu {torch.backends.mkldnn.matmul.fp32_precision}"  # type: ignore[attr-defined]
    return {
        "matmul_precision": precision,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


@contextlib.contextmanager
def matmul_settings(precision: str) -> Iterator[None]:
    """Float32 matrix products for ``precision`` while the run lasts, then the caller's settings
    back (they are process-wide). ``tf32``: ``set_float32_matmul_precision("high")``, which
    also turns on ``torch.backends.cuda.matmul.allow_tf32``, and TF32 convolutions
    (``torch.backends.cudnn.allow_tf32``); any other: ``highest`` (torch's default), and
    ``allow_tf32`` off with it. (Setting ``allow_tf32`` on its own as well would mix torch's two
    ways of saying this, which it refuses to read back.)"""
    import torch

    try:
        saved: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:
        saved = None  # mixed settings of the caller's: left to it, as torch's default after the run
    saved_cudnn = torch.backends.cudnn.allow_tf32
    tf32 = precision == "tf32"
    try:
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        if tf32:
            torch.backends.cudnn.allow_tf32 = True
        yield
    finally:
        torch.set_float32_matmul_precision(saved or "highest")
        torch.backends.cudnn.allow_tf32 = saved_cudnn


def scaler_state(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """This step's overflow flag (non-zero: the scaler will skip the step) and the scale its
    loss was multiplied by, as device tensors, after ``scaler.unscale_(optimizer)``: nothing is
    read back (``GradScaler.get_scale()`` would synchronise). Reads GradScaler's internals, which
    tests/monitor/test_loss_scaler.py pins.

    Raises:
        RuntimeError: if ``scaler.unscale_(optimizer)`` has not run this step.
    """
    try:
        found = scaler._found_inf_per_device(optimizer)
    except AssertionError:
        raise RuntimeError("call scaler.unscale_(optimizer) before GradientMonitor.step: the monitor's norms and clipping need true gradients") from None
    if not found:
        raise RuntimeError("call scaler.unscale_(optimizer) before GradientMonitor.step: the monitor's norms and clipping need true gradients")
    flags = list(found.values())
    overflow = flags[0] if len(flags) == 1 else sum(flag.to(flags[0].device) for flag in flags[1:]) + flags[0]
    assert scaler._scale is not None  # set by the scale() of this step's loss
    return overflow, scaler._scale.clone()  # clone: update() changes the scale in place
