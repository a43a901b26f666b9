"""The one vocabulary (gradbench.grid.labels): labels name every axis that varies and nothing
else, taken generically from the configuration, so a new axis appears where it varies."""

from __future__ import annotations

from gradbench.grid.labels import config_axes, varying_labels


def _config(**changes):
    config = {
        "task": "linreg", "task_knobs": {}, "optimizer": "adam", "hyperparameters": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8},
        "activation": None, "init": "default", "clip": "none", "seed": 0, "steps": 100, "batch_size": 32, "device": "cpu",
        "threads": 1, "eval_every": 5, "record_every": 10,
    }
    config.update(changes)
    return config


def test_labels_name_every_axis_that_varies_and_nothing_else():
    assert varying_labels([_config(batch_size=32), _config(batch_size=64)]) == ["batch_size=32", "batch_size=64"]
    assert varying_labels([_config(steps=100), _config(steps=200)]) == ["steps=100", "steps=200"]
    sgd = _config(optimizer="sgd", hyperparameters={"lr": 0.1})
    # The optimizer at its registered defaults reads as its name (never its full hyper-parameters).
    assert varying_labels([sgd, _config()]) == ["sgd, lr=0.1", "adam, lr=0.001"]
    # One configuration, nothing to compare with: its task, optimizer, lr, ... and seed.
    assert varying_labels([_config()]) == ["linreg, adam, lr=0.001, activation=-, init=default, clip=none, seed=0"]
    assert varying_labels([_config(), _config()]) == ["all runs", "all runs"]


def test_a_field_added_to_the_configuration_later_is_an_axis_where_it_varies():
    """Labels take fields generically: one unknown to this gradbench reads '-' where a
    configuration lacks it; a Cell field such as precision takes its default (fp32)."""
    labels = varying_labels([_config(future_axis="a"), _config(future_axis="b"), _config()])
    assert labels == ["future_axis=a", "future_axis=b", "future_axis=-"]
    labels = varying_labels([_config(precision="bf16"), _config(precision="fp32"), _config()])
    assert labels == ["precision=bf16", "precision=fp32", "precision=fp32"]
    assert varying_labels([_config(compile=True), _config(compile=True, seed=1)]) == ["seed=0", "seed=1"]


def test_fields_an_old_configuration_leaves_out_take_their_defaults():
    axes = config_axes(_config())
    assert (axes["validation"], axes["schedule"], axes["jacobian_every"], axes["detail_every"]) == (0.0, "constant", 0, 0)
    assert config_axes(_config(batch_size=None))["batch_size"] == "full"
    assert list(axes)[:4] == ["task", *[k for k in axes if k not in ("task",)][:3]]


def test_across_tasks_each_task_is_named_with_its_knobs_not_by_every_knob_of_every_task():
    """A sweep over an MLP and a CNN listed every knob of both (``channels=-, depth=4, ...``)."""
    mlp = _config(task="mnist1d_mlp", task_knobs={"depth": 4})
    cnn = _config(task="mnist1d_cnn", task_knobs={})
    assert varying_labels([mlp, cnn]) == ["mnist1d_mlp[depth=4]", "mnist1d_cnn"]
    # Within one task a knob that varies is an axis of its own.
    assert varying_labels([mlp, _config(task="mnist1d_mlp", task_knobs={"depth": 8})]) == ["depth=4", "depth=8"]
