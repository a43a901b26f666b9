"""Real image datasets through torchvision: MNIST, Fashion-MNIST and CIFAR-10.

They are read from a data directory: ``--data-dir`` on the command line, else ``$GRADBENCH_DATA``,
else ``$XDG_CACHE_HOME/gradbench/data``, else ``~/.cache/gradbench/data``. The layout is
torchvision's own, so a folder torchvision has already filled is used as it is::

    DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    DIR/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}

Nothing is downloaded unless the user allows it (``--download``, ``DataOptions(download=True)``);
offline and absent, loading raises ``DatasetUnavailable``, one line that names the directory and
how to fetch the data. Loading always goes through torchvision's dataset classes, which check
CIFAR-10's files against their published MD5 sums (a truncated download is refused, not read).

Preprocessing is DeepOBS's: MNIST and Fashion-MNIST pixels scaled to [0, 1] (``ToTensor``);
CIFAR-10 scaled to [0, 1], then normalised per channel with DeepOBS's mean and standard
deviation. There is no data augmentation: batches are drawn by indexing tensors on the device,
and DeepOBS's CIFAR-10 augmentation (random crops, flips, colour jitter) would have to run
inside the timed step. Accuracies on CIFAR-10 are therefore those of un-augmented training.

References:
    LeCun et al., "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998.
    Xiao, Rasul & Vollgraf, "Fashion-MNIST", https://arxiv.org/abs/1708.07747.
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (CIFAR-10).
    Schneider, Balles & Hennig, "DeepOBS", https://arxiv.org/abs/1903.05499.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from gradbench.tasks.datasets import Dataset

__all__ = ["DataOptions", "DatasetUnavailable", "REAL_DATASETS", "default_data_dir", "load_image_dataset"]


def default_data_dir() -> Path:
    """Where real datasets are read from by default (see the module docstring)."""
    if os.environ.get("GRADBENCH_DATA"):
        return Path(os.environ["GRADBENCH_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradbench" / "data"


@dataclass(frozen=True)
class DataOptions:
    """Where real datasets live and whether they may be downloaded.

    Not part of a cell's identity: the same data read from another folder gives the same run.

    Attributes:
        root: The data directory.
        download: Download a missing dataset into ``root`` (otherwise a missing one is an error).
    """

    root: Path
    download: bool = False

    @classmethod
    def from_environment(cls) -> DataOptions:
        return cls(default_data_dir(), download=False)


@dataclass(frozen=True)
class _Source:
    torchvision_class: str
    folder: str  # under the data directory, as torchvision lays it out
    files: tuple[str, ...]  # what must be in the folder, for the error message
    mean: tuple[float, ...] | None = None  # per-channel normalisation after scaling to [0, 1]
    std: tuple[float, ...] | None = None


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_SOURCES = {
    "mnist": _Source("MNIST", "MNIST/raw", _IDX_FILES),
    "fashion_mnist": _Source("FashionMNIST", "FashionMNIST/raw", _IDX_FILES),
    "cifar10": _Source(
        "CIFAR10",
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        # DeepOBS's constants (deepobs/pytorch/datasets/cifar10.py).
        mean=(0.49139968, 0.48215841, 0.44653091),
        std=(0.24703223, 0.24348513, 0.26158784),
    ),
}
REAL_DATASETS = tuple(_SOURCES)


class DatasetUnavailable(ValueError):
    """A real dataset that cannot be loaded: absent (downloads off), unreadable or not downloadable.

    Attributes:
        dataset, root: Which dataset, and the data directory it was looked for in.
        reason: What went wrong, in a few words.
    """

    def __init__(self, dataset: str, root: Path, reason: str, fetch_hint: str | None = None) -> None:
        self.dataset, self.root, self.reason = dataset, root, reason
        hint = fetch_hint or "pass --download to 'gradbench run' (DataOptions(download=True)) to fetch it"
        super().__init__(f"dataset {dataset!r} {reason} in {str(root)!r}; {hint}")

    def with_fetch_hint(self, hint: str) -> DatasetUnavailable:
        """The same error with another way to fetch the data (the CLI names its exact command)."""
        return DatasetUnavailable(self.dataset, self.root, self.reason, hint)


def load_image_dataset(name: str, options: DataOptions | None = None) -> Dataset:
    """Dataset ``name`` (``mnist``, ``fashion_mnist`` or ``cifar10``) as tensors on the CPU.

    Images are ``[N, C, H, W]`` float32, labels int64. Loaded once per process and data
    directory; later calls return the same tensors.

    Raises:
        ValueError: for an unknown name.
        DatasetUnavailable: if the files are absent (and downloads are off), fail torchvision's
            checks, or cannot be downloaded.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown real dataset {name!r}; choose from: {', '.join(REAL_DATASETS)}")
    options = options or DataOptions.from_environment()
    return _load(name, Path(options.root).expanduser().resolve(), options.download)


@functools.lru_cache(maxsize=4)
def _load(name: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets

    source = _SOURCES[name]
    dataset_class = getattr(torchvision.datasets, source.torchvision_class)
    if download:
        try:
            dataset_class(str(root), train=True, download=True)  # fetches train and test files
        except Exception as error:  # no network, a bad checksum, a full disk: say which
            raise DatasetUnavailable(
                name, root, f"could not be downloaded ({_first_line(error)})",
                f"copy the files there by hand: {_expected_files(root, source)}",
            ) from None
    try:
        train = dataset_class(str(root), train=True, download=False)
        test = dataset_class(str(root), train=False, download=False)
    except Exception as error:
        folder = root / source.folder
        present = folder.is_dir() and any(folder.iterdir())
        reason = f"is incomplete or corrupted ({_first_line(error)})" if present else "was not found"
        files = _expected_files(root, source)
        hint = f"copy the files there by hand: {files}" if download else f"pass --download to 'gradbench run' (DataOptions(download=True)) to fetch it, or copy {files}"
        raise DatasetUnavailable(name, root, reason, hint) from None
    x_train, y_train = _as_tensors(train.data, train.targets, source)
    x_test, y_test = _as_tensors(test.data, test.targets, source)
    return Dataset(f"{name}[root={root}]", x_train, y_train, x_test, y_test, num_classes=len(train.classes))


def _as_tensors(images: object, labels: object, source: _Source) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.as_tensor(images)
    # MNIST's data is [N, H, W]; CIFAR-10's is [N, H, W, C] (numpy, channels last).
    pixels = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
    x = pixels.float().div_(255.0).contiguous()
    if source.mean is not None and source.std is not None:
        x.sub_(torch.tensor(source.mean).view(1, -1, 1, 1)).div_(torch.tensor(source.std).view(1, -1, 1, 1))
    return x, torch.as_tensor(labels, dtype=torch.long)


def _expected_files(root: Path, source: _Source) -> str:
    return f"{root / source.folder}/{{{','.join(source.files)}}}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
