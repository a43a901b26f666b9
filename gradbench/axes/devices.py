"""Devices a cell runs on: ``cpu``, ``cuda`` or ``cuda:N``, parsed, and checked against this
machine where the cell runs here."""

from __future__ import annotations

import torch

from gradbench.axes.specs import shown

__all__ = ["parse_device", "check_device"]


def parse_device(text: str) -> torch.device:
    """Parse a device string, without asking whether this machine has it.

    Raises:
        ValueError: for anything but ``cpu``, ``cuda`` or ``cuda:N``.
    """
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"invalid device {shown(text)}; choose from: cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {shown(text)}; choose from: cpu, cuda, cuda:N")
    return device


def check_device(text: str) -> torch.device:
    """Parse a device string and check that it is usable here.

    Raises:
        ValueError: for anything but ``cpu``, ``cuda`` or ``cuda:N``, or CUDA asked for but absent.
    """
    device = parse_device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {text!r} asked for but CUDA is not available here (torch {torch.__version__}); choose from: cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {text!r} does not exist: {count} CUDA device(s) visible; choose from: cpu, " + ", ".join(f"cuda:{i}" for i in range(count)))
    return device
