"""The environment a timing was measured in: stored with every run."""

from __future__ import annotations

import os
import platform
import socket

import torch

__all__ = ["environment", "device_name"]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_name()
    return device.type


def environment(device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, object]:
    """What produced a timing: versions, device, thread count, dtype, host."""
    from gradbench import __version__

    env: dict[str, object] = {
        "gradbench": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "dtype": str(dtype).replace("torch.", ""),
        # The CUDA and cuDNN torch was built with; on a CPU run they still name the build.
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        # Whether torch.einsum orders its contractions (the opt_einsum package, enabled): without
        # it a many-operand einsum runs left to right (PSGD Kron's step: 250x slower on an MLP).
        "opt_einsum": torch.backends.opt_einsum.is_available() and bool(torch.backends.opt_einsum.enabled),
    }
    if device.type == "cuda":
        env["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return env
