"""Shared test setup: one torch thread (the default is 50-100x slower on small shared
machines), a private dataset cache and an empty data directory, so tests never touch (or
depend on) the user's cache and downloaded datasets."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)
    if "GRADBENCH_CACHE" not in os.environ:
        os.environ["GRADBENCH_CACHE"] = tempfile.mkdtemp(prefix="gradbench-test-cache-")
    # Always empty: tests that need real datasets write tiny ones (tests/tiny_datasets.py).
    os.environ["GRADBENCH_DATA"] = tempfile.mkdtemp(prefix="gradbench-test-data-")


@pytest.fixture
def small_mlp_task() -> str:
    """A fast mnist1d_mlp: 1000 samples, 3 hidden layers of 32."""
    return "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


# -- reading a store that a killed sweep may be writing ------------------------------------------


def _stored_runs(path: Path) -> dict[str, str]:
    """Each stored run's start and finish times, by key; empty while the file is not readable yet."""
    import sqlite3

    from gradbench.store import Store

    if not path.exists():
        return {}
    try:
        with Store.open(path, readonly=True) as store:
            return {r["key"]: r["started_at"] + r["finished_at"] for r in store.runs()}
    except (sqlite3.OperationalError, ValueError):
        return {}


@pytest.fixture
def stored_runs():
    """``stored_runs(path)``: start and finish times of the runs stored at ``path``, by key."""
    return _stored_runs


# -- a plugin whose task kills its worker (executor tests) --------------------------------------


def _dying_plugin(tmp_path: Path, name: str, die: str) -> Path:
    """A plugin file registering task ``name``: linreg whose build SIGKILLs its own process on
    the first attempt (``die='once'``) or on every attempt (``die='always'``)."""
    marker = tmp_path / f"{name}.marker"
    path = tmp_path / f"{name}_plugin.py"
    path.write_text(
        f"""
import os, signal
from dataclasses import replace
from pathlib import Path
from gradbench.tasks import TASKS, register_task

linreg = TASKS.get("linreg")

def build(config):
    marker = Path({str(marker)!r})
    if {die!r} == "always" or not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return linreg.build(config)

if {name!r} not in TASKS:
    register_task(replace(linreg, name={name!r}, description="linreg whose worker dies", build=build))
"""
    )
    return path



@pytest.fixture
def dying_plugin():
    """``dying_plugin(folder, name, die)`` writes a plugin file registering task ``name``."""
    return _dying_plugin


# -- tiny real datasets, written in the on-disk formats torchvision reads --------------------

TINY_TRAIN, TINY_TEST = 200, 50


@dataclass(frozen=True)
class TinyData:
    """A data directory holding tiny MNIST, Fashion-MNIST and CIFAR-10 in torchvision's layout.

    Attributes:
        root: The data directory (pass it as ``--data-dir`` or ``DataOptions(root)``).
        arrays: Per dataset, the uint8 images and labels written: ``(x_train, y_train, x_test,
            y_test)``; MNIST-style images ``[N, 28, 28]``, CIFAR-10 ``[N, 32, 32, 3]``.
    """

    root: Path
    arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _class_images(rng: np.random.RandomState, count: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0..9 and uint8 images: a fixed random template per class plus noise, so a model
    can learn something in a few steps (random pixels with random labels could only be memorised)."""
    templates = rng.randint(0, 256, size=(10, *shape))
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    noise = rng.randint(0, 256, size=(count, *shape))
    images = (0.7 * templates[labels] + 0.3 * noise).astype(np.uint8)
    return images, labels.astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format (LeCun's MNIST files): 0, 0, type 0x08 (ubyte), number of dimensions,
    each dimension as a big-endian int32, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _write_mnist_like(folder: Path, seed: int) -> tuple[np.ndarray, ...]:
    # torchvision reads the uncompressed files that its download step extracts from the .gz ones.
    folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    x_train, y_train = _class_images(rng, TINY_TRAIN, (28, 28))
    x_test, y_test = _class_images(np.random.RandomState(seed), TINY_TEST, (28, 28))  # same templates
    for prefix, images, labels in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return x_train, y_train, x_test, y_test


def _write_cifar10(folder: Path) -> tuple[np.ndarray, ...]:
    """CIFAR-10's python version: pickled dicts with 'data' ([N, 3072] uint8, the red plane, then
    green, then blue, each row-major) and 'labels', five training batches and a test batch, and
    'batches.meta' with the class names."""
    folder.mkdir(parents=True)
    rng = np.random.RandomState(2)
    x_train, y_train = _class_images(rng, TINY_TRAIN, (32, 32, 3))
    x_test, y_test = _class_images(np.random.RandomState(2), TINY_TEST, (32, 32, 3))
    per_batch = TINY_TRAIN // 5

    def dump(name: str, images: np.ndarray, labels: np.ndarray) -> None:
        planes = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "data": planes, "labels": [int(v) for v in labels]}, handle, protocol=2)

    for index in range(5):
        part = slice(index * per_batch, (index + 1) * per_batch)
        dump(f"data_batch_{index + 1}", x_train[part], y_train[part])
    dump("test_batch", x_test, y_test)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, handle, protocol=2)
    return x_train, y_train, x_test, y_test


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyData]:
    """Tiny MNIST, Fashion-MNIST and CIFAR-10 (200 training, 50 test images each).

    They load through the users' code path: torchvision's dataset classes, then gradbench's
    conversion. One thing differs: torchvision checks each CIFAR-10 file against the real
    file's MD5 sum, which a tiny file cannot match, so for the session the expected sums are
    the tiny files' own. The check itself still runs (a corrupted file is still refused).
    """
    from torchvision.datasets import CIFAR10

    root = tmp_path_factory.mktemp("tiny-data")
    arrays = {
        "mnist": _write_mnist_like(root / "MNIST" / "raw", seed=0),
        "fashion_mnist": _write_mnist_like(root / "FashionMNIST" / "raw", seed=1),
        "cifar10": _write_cifar10(root / "cifar-10-batches-py"),
    }
    folder = root / "cifar-10-batches-py"
    patch = pytest.MonkeyPatch()
    patch.setattr(CIFAR10, "train_list", [[name, _md5(folder / name)] for name, _ in CIFAR10.train_list])
    patch.setattr(CIFAR10, "test_list", [[name, _md5(folder / name)] for name, _ in CIFAR10.test_list])
    patch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")})
    try:
        yield TinyData(root, arrays)
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small store of the report, plot and HTML tests (``tests/report_store.py``), made once."""
    from report_store import make_store

    return make_store(tmp_path_factory.mktemp("report") / "report.db")
