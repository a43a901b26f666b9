"""Datasets as tensors: generated offline (MNIST-1D, linear regression), cached, moved once.

A ``Dataset`` holds the whole training and test sets as tensors. The runner moves it to the
device once and draws batches by indexing there, so no DataLoader or host-to-device copy sits in
the training loop.

MNIST-1D is generated with the ``mnist1d`` package's ``make_dataset`` (never ``get_dataset``,
which downloads) and cached on disk under the cache directory: ``$GRADBENCH_CACHE`` if set,
else ``$XDG_CACHE_HOME/gradbench``, else ``~/.cache/gradbench``.

References:
    Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024,
    https://arxiv.org/abs/2011.14439.
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Dataset", "cache_dir", "load_mnist1d", "make_linreg", "linreg_optimum", "on_device"]


@dataclass(frozen=True)
class Dataset:
    """A supervised dataset held as tensors.

    Attributes:
        name: Short name, with its generation parameters.
        x_train, y_train, x_test, y_test: Inputs and targets.
        num_classes: Number of classes, or ``None`` for regression.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None = None

    @property
    def num_train(self) -> int:
        return self.x_train.shape[0]

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            self.name,
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.num_classes,
        )


def cache_dir() -> Path:
    """Where generated datasets are cached (see the module docstring)."""
    if os.environ.get("GRADBENCH_CACHE"):
        return Path(os.environ["GRADBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradbench"


def _save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(tensors, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@functools.lru_cache(maxsize=8)
def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> Dataset:
    """MNIST-1D generated offline: 40-sample 1-D signals of 10 digit templates, 80/20 split.

    The defaults reproduce the published dataset's generation parameters (5000 samples, seed 42:
    4000 train and 1000 test). The first call generates it (about a second) and caches it.
    """
    if num_samples < 10:
        raise ValueError(f"invalid num_samples={num_samples}: MNIST-1D needs at least 10 (one per class)")
    path = cache_dir() / f"mnist1d-n{num_samples}-seed{seed}.pt"
    tensors = None
    if path.exists():
        try:
            tensors = torch.load(path, weights_only=True)
        except Exception:  # a corrupt cache file is regenerated, not fatal
            tensors = None
    if tensors is None:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = num_samples
        args.seed = seed
        # make_dataset reseeds the global numpy and random generators: restore the caller's.
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            raw = make_dataset(args)
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
        tensors = {
            "x_train": torch.tensor(raw["x"], dtype=torch.float32),
            "y_train": torch.tensor(raw["y"], dtype=torch.long),
            "x_test": torch.tensor(raw["x_test"], dtype=torch.float32),
            "y_test": torch.tensor(raw["y_test"], dtype=torch.long),
        }
        try:
            _save_atomically(tensors, path)
        except OSError:  # a read-only cache only costs regeneration time
            pass
    return Dataset(f"mnist1d[num_samples={num_samples},seed={seed}]", num_classes=10, **tensors)


@functools.lru_cache(maxsize=8)
def make_linreg(num_train: int = 512, num_test: int = 512, dim: int = 20, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Linear regression data: ``y = x @ w + b + noise * eps`` with ``x, w, b, eps ~ N(0, 1)``.

    The closed-form least-squares solution (``linreg_optimum``) is the optimum a correct
    optimizer converges to.
    """
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim, 1, generator=generator, dtype=torch.float64)
    bias = torch.randn(1, generator=generator, dtype=torch.float64)

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(count, dim, generator=generator, dtype=torch.float64)
        y = x @ weight + bias + noise * torch.randn(count, 1, generator=generator, dtype=torch.float64)
        return x.float(), y.float()

    x_train, y_train = sample(num_train)
    x_test, y_test = sample(num_test)
    name = f"linreg[dim={dim},noise={noise},num_test={num_test},num_train={num_train},seed={seed}]"
    return Dataset(name, x_train, y_train, x_test, y_test, None)


def linreg_optimum(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Closed-form least squares on the training set: (weight [dim, 1], bias [1], train MSE)."""
    x = dataset.x_train.double().cpu()
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, dataset.y_train.double().cpu()).solution
    residual = design @ solution - dataset.y_train.double().cpu()
    return solution[:-1], solution[-1], float(residual.square().mean())


# (id of the host dataset, device) -> (the host dataset, its device copy). Holding the host
# dataset keeps its id from being reused while the entry lives. Least recently used first.
_device_copies: OrderedDict[tuple[int, str], tuple[Dataset, Dataset]] = OrderedDict()
DEVICE_CACHE_SIZE = 4


def on_device(dataset: Dataset, device: torch.device) -> Dataset:
    """``dataset`` on ``device``: copied there once and reused by later runs of the process
    (the last ``DEVICE_CACHE_SIZE`` datasets are kept)."""
    if device.type == "cpu":
        return dataset
    key = (id(dataset), str(device))
    if key in _device_copies:
        _device_copies.move_to_end(key)
    else:
        _device_copies[key] = (dataset, dataset.to(device))
        while len(_device_copies) > DEVICE_CACHE_SIZE:
            _device_copies.popitem(last=False)
    return _device_copies[key][1]
