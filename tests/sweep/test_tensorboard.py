"""``gradbench run --tensorboard DIR``: each stored run's event files, read back with
TensorBoard's own reader and checked against the store, value for value."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gradbench.cli import main
from gradbench.store import Store

SMALL = "mnist1d_mlp[depth=3,width=32,num_samples=1000]"


def _f32(value: float) -> float:
    """What TensorBoard keeps of a value: a float32 scalar."""
    return float(np.float32(value))


def _scalars(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})  # keep every event
    accumulator.Reload()
    return {tag: [(event.step, event.value, event.wall_time) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_every_runs_event_files_hold_its_stored_losses_metrics_and_gradient_norms(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    db, logdir = tmp_path / "r.db", tmp_path / "tb"
    code = main([
        "run", "--task", SMALL, "--optimizer", "sgd,adam", "--steps", "30", "--eval-every", "10", "--record-every", "5",
        "--validation", "0.1", "--db", str(db), "--tensorboard", str(logdir), "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    with Store.open(db, readonly=True) as store:
        runs = store.runs()
        folders = sorted(path.name for path in logdir.iterdir())
        assert len(runs) == 2 and folders == sorted(folder for folder in folders if not folder.startswith("."))
        for run in runs:
            (folder,) = [logdir / name for name in folders if name.endswith("__" + run["key"][:12])]
            scalars = _scalars(folder)
            curve = store.curve(run["key"])
            assert [(step, value) for step, value, _ in scalars["loss/train_step"]] == [(row["step"], _f32(row["loss"])) for row in curve]
            evaluations = store.evaluations(run["key"])
            for name in ("train_loss", "test_loss", "test_accuracy", "validation_loss", "validation_accuracy", "lr"):
                assert [(step, value) for step, value, _ in scalars[f"eval/{name}"]] == [(row["step"], _f32(row[name])) for row in evaluations], name
            layers = list(store.layer_rows([run["key"]]))
            names = sorted({row["layer_name"] for row in layers})
            assert names == ["layers.0", "layers.2", "layers.4", "layers.6"]
            for name in names:
                stored = [(row["step"], _f32(row["grad_norm"])) for row in layers if row["layer_name"] == name]
                assert [(step, value) for step, value, _ in scalars[f"grad_norm/{name}"]] == stored and len(stored) == 6
            globals_ = store.connection.execute("SELECT step, norm_before_clip FROM grad_norms WHERE run_key = ? ORDER BY step", (run["key"],)).fetchall()
            assert [(step, value) for step, value, _ in scalars["grad_norm/global"]] == [(step, _f32(norm)) for step, norm in globals_]
            # Wall times: the run's start plus its training time, never going back.
            times = [wall for _, _, wall in scalars["loss/train_step"]]
            assert times == sorted(times) and times[-1] - times[0] <= run["wall_time_s"]
            assert json.loads(run["config"])["optimizer"] in folder.name


def test_without_the_extra_it_is_one_line_naming_it_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an install without tensorboard gives
    db, logdir = tmp_path / "r.db", tmp_path / "tb"
    code = main(["run", "--task", SMALL, "--steps", "5", "--db", str(db), "--tensorboard", str(logdir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--tensorboard needs the tensorboard package" in err and "pip install 'gradbench[tensorboard]'" in err
    assert not db.exists() and not logdir.exists()


def test_a_tensorboard_path_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    (tmp_path / "tb").write_text("not a folder")
    code = main(["run", "--task", SMALL, "--steps", "5", "--db", str(tmp_path / "r.db"), "--tensorboard", str(tmp_path / "tb"), "--no-progress"])
    assert code == 2 and "is not a directory" in capsys.readouterr().err and not (tmp_path / "r.db").exists()
    # Under a file, the folder cannot be made: refused before anything runs, not at the first run.
    code = main(["run", "--task", SMALL, "--steps", "5", "--db", str(tmp_path / "r.db"), "--tensorboard", str(tmp_path / "tb" / "sub"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot be made" in err and not (tmp_path / "r.db").exists()


def test_an_event_file_that_cannot_be_written_warns_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    """A full disk under the event files: every run is still stored, each failure one warning."""
    pytest.importorskip("tensorboard")
    from gradbench.sweep import tensorboard

    def disk_full(self, result):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tensorboard.TensorBoardWriter, "__call__", disk_full)
    code = main(["run", "--task", SMALL, "--steps", "3", "--seeds", "0,1,2", "--db", str(tmp_path / "r.db"), "--tensorboard", str(tmp_path / "tb"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("No space left on device") == 3
    with Store.open(tmp_path / "r.db", readonly=True) as store:
        assert len(store.runs()) == 3
