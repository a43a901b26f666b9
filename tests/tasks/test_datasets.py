"""Datasets: real ones read through torchvision from tiny files in the real on-disk formats,
missing or corrupt ones refused with one clear line, generated ones made once and cached."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from gradbench.run import evaluate
from gradbench.tasks import datasets as data_module
from gradbench.tasks.datasets import load_digits, load_mnist1d, make_adding_problem
from gradbench.tasks.image_datasets import DataOptions, DatasetUnavailable, default_data_dir, load_image_dataset


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_style_idx_files_load_as_scaled_images(name, tiny_data):
    x_train, y_train, x_test, y_test = tiny_data.arrays[name]
    dataset = load_image_dataset(name, DataOptions(tiny_data.root))
    assert dataset.x_train.shape == (200, 1, 28, 28) and dataset.x_test.shape == (50, 1, 28, 28)
    assert dataset.x_train.dtype == torch.float32 and dataset.y_train.dtype == torch.long
    torch.testing.assert_close(dataset.x_train[:, 0], torch.from_numpy(x_train).float() / 255)
    torch.testing.assert_close(dataset.x_test[:, 0], torch.from_numpy(x_test).float() / 255)
    assert dataset.y_train.tolist() == y_train.tolist() and dataset.y_test.tolist() == y_test.tolist()
    assert dataset.num_classes == 10
    assert load_image_dataset(name, DataOptions(tiny_data.root)) is dataset  # read once per process


def test_cifar10_batches_load_channels_first_with_deepobs_normalisation(tiny_data):
    x_train, y_train, x_test, y_test = tiny_data.arrays["cifar10"]
    dataset = load_image_dataset("cifar10", DataOptions(tiny_data.root))
    assert dataset.x_train.shape == (200, 3, 32, 32) and dataset.x_test.shape == (50, 3, 32, 32)
    mean = torch.tensor([0.49139968, 0.48215841, 0.44653091]).view(1, 3, 1, 1)
    std = torch.tensor([0.24703223, 0.24348513, 0.26158784]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(x_train).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(dataset.x_train, expected)
    assert dataset.y_train.tolist() == y_train.tolist() and dataset.y_test.tolist() == y_test.tolist()


def test_a_missing_dataset_names_the_directory_and_how_to_fetch_it(tmp_path):
    with pytest.raises(DatasetUnavailable) as info:
        load_image_dataset("mnist", DataOptions(tmp_path / "data"))
    message = str(info.value)
    assert "\n" not in message
    assert f"dataset 'mnist' was not found in '{tmp_path / 'data'}'" in message
    assert "--download" in message and "MNIST/raw/{train-images-idx3-ubyte," in message


def test_a_corrupted_cifar10_file_fails_torchvisions_checksum(tiny_data, tmp_path):
    shutil.copytree(tiny_data.root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    content = bytearray(batch.read_bytes())
    content[-100] ^= 0xFF
    batch.write_bytes(bytes(content))
    with pytest.raises(DatasetUnavailable, match=r"dataset 'cifar10' is incomplete or corrupted \(RuntimeError: Dataset not found or corrupted"):
        load_image_dataset("cifar10", DataOptions(tmp_path))


def test_a_truncated_idx_file_is_refused(tiny_data, tmp_path):
    shutil.copytree(tiny_data.root / "MNIST", tmp_path / "MNIST")
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DatasetUnavailable, match=r"dataset 'mnist' is incomplete or corrupted"):
        load_image_dataset("mnist", DataOptions(tmp_path))


def test_a_failed_download_says_so_and_how_to_place_the_files(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got: <urlopen error>")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DatasetUnavailable) as info:
        load_image_dataset("mnist", DataOptions(tmp_path, download=True))
    message = str(info.value)
    assert "could not be downloaded (RuntimeError: Error downloading train-images-idx3-ubyte.gz:)" in message
    assert "copy the files there by hand" in message and "\n" not in message


def test_download_is_not_attempted_when_the_files_are_there(tiny_data, monkeypatch):
    import torchvision.datasets.mnist

    def fail(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fail)
    dataset = load_image_dataset("fashion_mnist", DataOptions(tiny_data.root, download=True))
    assert dataset.num_train == 200


def test_data_directory_default(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADBENCH_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("GRADBENCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "gradbench" / "data"


def test_train_eval_subset_is_fixed_and_used_by_evaluate(tiny_data):
    full = load_image_dataset("mnist", DataOptions(tiny_data.root))
    subset = full.with_train_eval_size(64)
    again = full.with_train_eval_size(64)
    assert subset.train_eval_index.tolist() == again.train_eval_index.tolist()
    assert len(set(subset.train_eval_index.tolist())) == 64 and subset.name != full.name
    assert full.with_train_eval_size(500) is full
    assert subset.to("cpu").train_eval_index is not None
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    loss_fn = torch.nn.functional.cross_entropy
    rows = subset.train_eval_index
    with torch.no_grad():
        expected = float(loss_fn(model(full.x_train[rows]), full.y_train[rows]))
    assert evaluate(model, subset, loss_fn, 0, 0.0).train_loss == pytest.approx(expected, rel=1e-6)
    assert evaluate(model, full, loss_fn, 0, 0.0).train_loss != pytest.approx(expected, rel=1e-6)


def test_digits_split_and_scale():
    dataset = load_digits()
    assert dataset.x_train.shape == (1437, 1, 8, 8) and dataset.x_test.shape == (360, 1, 8, 8)
    assert 0.0 == dataset.x_train.min() and dataset.x_train.max() == 1.0
    assert set(dataset.y_train.tolist()) == set(range(10))
    assert (data_module.cache_dir() / "digits-seed0.pt").exists()


def test_adding_problem_has_one_marker_in_each_half_and_sums_them():
    dataset = make_adding_problem(30, num_train=2000, num_test=100, seed=5)
    x, y = dataset.x_train, dataset.y_train
    assert x.shape == (2000, 30, 2) and y.shape == (2000, 1)
    markers = x[:, :, 1]
    assert torch.all(markers.sum(dim=1) == 2)
    assert torch.all(markers[:, :15].sum(dim=1) == 1) and torch.all(markers[:, 15:].sum(dim=1) == 1)
    torch.testing.assert_close(y[:, 0], (x[:, :, 0] * markers).sum(dim=1))
    # Predicting the mean, 1, costs Var(U1 + U2) = 1/6.
    assert float((y - 1).square().mean()) == pytest.approx(1 / 6, rel=0.1)
    with pytest.raises(ValueError, match="invalid sequence length 1"):
        make_adding_problem(1)


def test_generated_datasets_are_read_from_the_cache_the_second_time(monkeypatch):
    first = make_adding_problem(12, num_train=50, num_test=10, seed=9)
    make_adding_problem.cache_clear()
    monkeypatch.setattr(torch, "rand", lambda *a, **k: (_ for _ in ()).throw(AssertionError("regenerated")))
    second = make_adding_problem(12, num_train=50, num_test=10, seed=9)
    assert torch.equal(first.x_train, second.x_train)

    load_mnist1d(num_samples=200, seed=3)
    load_mnist1d.cache_clear()
    import mnist1d.data

    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: (_ for _ in ()).throw(AssertionError("regenerated")))
    assert load_mnist1d(num_samples=200, seed=3).num_train == 160


def test_a_corrupt_cache_file_is_regenerated(tmp_path):
    path = tmp_path / "thing.pt"
    path.write_bytes(b"not a torch file")
    calls = []

    def generate():
        calls.append(1)
        return {"x": torch.arange(3)}

    assert data_module._cached(path, generate)["x"].tolist() == [0, 1, 2]
    assert data_module._cached(path, generate)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 1  # the second call read the file the first one wrote
    assert np.array_equal(torch.load(path)["x"].numpy(), np.arange(3))


def test_every_run_of_a_real_dataset_task_shares_one_dataset_object(tiny_data):
    """So that ``on_device`` (keyed by the object) copies it to a GPU once per process, not
    once per run: the train-eval subset is made once per dataset and size."""
    from gradbench.tasks import TASKS, TaskConfig, resolve_knobs
    from gradbench.tasks.datasets import on_device

    task = TASKS.get("mnist_mlp")
    knobs = resolve_knobs("mnist_mlp", {"train_eval_size": 50})  # below the 200 tiny examples
    knobs.pop("batch_size", None)
    builds = [task.build(TaskConfig(knobs, "relu", {}, "default", {}, DataOptions(tiny_data.root))) for _ in range(2)]
    assert builds[0].data is builds[1].data
    assert builds[0].data.train_eval_index is not None  # the subset, drawn once
    assert on_device(builds[0].data, torch.device("cpu")) is builds[1].data
