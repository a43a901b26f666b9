"""What an optimizer costs in memory: the bytes of its state, and a CUDA run's peak allocation.

``optimizer_state_bytes`` counts every tensor the optimizer keeps in ``optimizer.state``, found
through nested dicts, lists and tuples (L-BFGS keeps lists of tensors). Each storage is counted
once, by its size in bytes, however many tensors view it (a flat buffer that per-parameter state
tensors slice is counted once, not once per slice). Storages that belong to the model's
parameters or their gradients are left out: the optimizer does not pay for them. Non-tensor
state (Python numbers such as L-BFGS's ``n_iter``, strings, ``None``) counts 0: it lives in the
Python heap, not in the device memory a run can run out of. torch's own step counters are
tensors (since torch 1.12, one 0-d float32 per parameter tensor, on the CPU unless
``capturable`` or ``fused``) and count as such: 4 bytes per parameter tensor for Adam.

Counting reads only tensor metadata (no data, no device synchronisation) and runs outside the
timed step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

__all__ = ["optimizer_state_bytes", "state_tensors"]


def state_tensors(state: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``state``, through nested mappings, lists and tuples."""
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for value in state.values():
            yield from state_tensors(value)
    elif isinstance(state, (list, tuple)):
        for value in state:
            yield from state_tensors(value)


def _storage(tensor: torch.Tensor) -> tuple[tuple[str, int], int]:
    """A storage's identity (device, address) and its size in bytes; a tensor without a plain
    storage (sparse, some subclasses) is its own, of ``numel x element size`` bytes."""
    try:
        storage = tensor.untyped_storage()
        return (str(tensor.device), storage.data_ptr()), storage.nbytes()
    except (RuntimeError, NotImplementedError):
        return (str(tensor.device), id(tensor)), tensor.numel() * tensor.element_size()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, parameters: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct tensor storages in ``optimizer.state``, those of ``parameters``
    (the model's) and their gradients excluded. Read after a step: most optimizers create
    their state lazily, at their first ``step()``."""
    owned = set()
    for parameter in (*parameters, *(p for group in optimizer.param_groups for p in group["params"])):
        owned.add(_storage(parameter)[0])
        if parameter.grad is not None:
            owned.add(_storage(parameter.grad)[0])
    counted: dict[tuple[str, int], int] = {}
    for tensor in state_tensors(list(optimizer.state.values())):
        key, size = _storage(tensor)
        if key not in owned:
            counted[key] = size
    return sum(counted.values())
