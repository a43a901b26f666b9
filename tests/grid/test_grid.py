"""Suite parsing and grid expansion: products, keys, validation with file lines."""

from __future__ import annotations

import re

import pytest
import torch

from gradbench.grid import Cell, SuiteError, default_suite, expand, load_suite, parse_suite


def suite_of(**axes) -> list[Cell]:
    return expand(parse_suite("").with_overrides(axes))


def test_grid_is_the_product_of_its_axes():
    cells = suite_of(optimizers=["sgd", "adam"], activations=["relu", "tanh", "sigmoid"], clips=["none", "norm:1"], seeds=[0, 1], steps=[10])
    assert len(cells) == 2 * 3 * 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    assert {(c.optimizer, c.activation, c.clip, c.seed) for c in cells} == {
        (o, a, c, s) for o in ("sgd", "adam") for a in ("relu", "tanh", "sigmoid") for c in ("none", "norm:1") for s in (0, 1)
    }


def test_keys_are_stable_and_depend_on_every_field():
    cell = suite_of(steps=[10])[0]
    again = suite_of(steps=[10])[0]
    assert cell.key == again.key and len(cell.key) == 16
    assert suite_of(steps=[10], seeds=[1])[0].key != cell.key
    assert suite_of(steps=[11])[0].key != cell.key
    assert suite_of(steps=[10], lrs=[0.05])[0].key != cell.key


def test_cell_config_round_trips():
    cell = suite_of(optimizers=["adam[betas=(0.8,0.9)]"], tasks=["mnist1d_mlp[depth=3]"])[0]
    restored = Cell.from_config(cell.config())
    assert restored == cell and restored.key == cell.key
    assert dict(restored.hyperparameters)["betas"] == (0.8, 0.9)


def test_hyperparameters_are_resolved_with_defaults_and_lr_axis_overrides():
    (cell,) = suite_of(optimizers=["adam"], lrs=[0.01])
    assert dict(cell.hyperparameters) == {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8}
    (cell,) = suite_of(optimizers=["adam[lr=0.02]"])
    assert cell.lr == 0.02
    assert cell.optimizer_label == "adam[betas=(0.9,0.999),eps=1e-08,lr=0.02]"


def test_axes_a_task_does_not_use_collapse():
    cells = suite_of(tasks=["linreg"], activations=["relu", "tanh"], seeds=[0])
    assert len(cells) == 1 and cells[0].activation is None


def test_full_batch_optimizer_has_no_batch_size():
    gd, sgd = suite_of(optimizers=["gd", "sgd"], batch_sizes=[32])
    assert gd.batch_size is None and sgd.batch_size == 32


def test_task_default_batch_size_and_eval_cadence():
    (cell,) = suite_of(steps=[400])
    assert cell.batch_size == 64 and cell.eval_every == 20


@pytest.mark.parametrize(
    "settings, expected",
    [({}, (10, 100)), ({"record_every": 5}, (5, 50)), ({"record_every": 5, "detail_every": 15}, (5, 15)), ({"detail_every": 0}, (10, 0)), ({"record_every": 0}, (0, 0))],
)
def test_record_and_detail_cadences(settings, expected):
    (cell,) = suite_of(**settings)
    assert (cell.record_every, cell.detail_every) == expected
    assert cell.config().get("detail_every", 0) == expected[1]  # left out of the key at 0
    assert Cell.from_config(cell.config()) == cell


def test_duplicates_are_removed_across_grids():
    suite = parse_suite('steps = 5\n[[grid]]\noptimizers = ["sgd", "adam"]\n[[grid]]\noptimizers = ["adam"]\n')
    assert [c.optimizer for c in expand(suite)] == ["sgd", "adam"]


def test_top_level_keys_are_defaults_for_grids():
    suite = parse_suite('seeds = [3]\nsteps = 7\n[[grid]]\nactivations = ["tanh"]\n[[grid]]\nsteps = 9\n')
    cells = expand(suite)
    assert [(c.activation, c.steps, c.seed) for c in cells] == [("tanh", 7, 3), ("relu", 9, 3)]


def test_default_suite_expands():
    cells = expand(default_suite())
    assert len(cells) >= 10
    assert {"sgd", "adam", "rmsprop", "adagrad", "gd"} <= {c.optimizer for c in cells}
    assert {"sigmoid", "relu"} <= {c.activation for c in cells}
    assert {"none", "norm:1"} <= {c.clip for c in cells}


SUITE_ERRORS = [
    ('steps = 5\noptimizer = ["sgd"]\n', r"line 2: unknown key 'optimizer'.*optimizers"),
    ('steps = 5\n[[grid]]\n\noptimizers = ["adamm"]\n', r"line 4: unknown optimizer 'adamm' \(did you mean 'adam'\?\)"),
    ('optimizers = ["adam[lr=abc]"]\n', r"line 1: invalid adam hyper-parameter lr='abc'"),
    ('optimizers = ["sgd[lr=-1]"]\n', r"line 1: invalid learning rate lr=-1"),
    ('clips = ["norm:-1"]\n', r"line 1: invalid clip 'norm:-1'"),
    ('tasks = ["mnist1d_mlp[depht=3]"]\n', r"line 1: task 'mnist1d_mlp' has no knob 'depht'; knobs: depth"),
    ('seeds = [-1]\n', r"line 1: invalid seed -1"),
    ('steps = 0\n', r"line 1: invalid step 0"),
    ('activations = ["rleu"]\n', r"unknown activation 'rleu' \(did you mean 'relu'\?\)"),
    ('inits = ["xavier"]\n', r"unknown init 'xavier'"),
    ('threads = 0\n', r"line 1: invalid threads 0"),
    ('steps = 5\noptimizers = [sgd]\n', r"malformed TOML: .*line 2"),
    ("grid = 3\n", r"'grid' must be a list of tables"),
    ("record_every = 4\ndetail_every = 10\n", r"line 2: invalid detail_every 10: must be 0 or a multiple of record_every \(4\)"),
    ("record_every = 0\ndetail_every = 10\n", r"line 2: invalid detail_every 10: must be 0 or a multiple of record_every \(0\)"),
    ("detail_every = -1\n", r"line 1: invalid detail_every -1"),
]


@pytest.mark.parametrize("text, pattern", SUITE_ERRORS)
def test_bad_suites_name_the_value_and_line(text, pattern):
    with pytest.raises(SuiteError, match=pattern):
        expand(parse_suite(text, "suite.toml"))


def test_load_suite_reports_missing_file(tmp_path):
    with pytest.raises(SuiteError, match=re.escape(str(tmp_path / "nope.toml"))):
        load_suite(tmp_path / "nope.toml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
def test_cuda_without_cuda_is_rejected():
    with pytest.raises(SuiteError, match=r"device 'cuda' asked for but CUDA is not available.*choose from: cpu"):
        suite_of(device="cuda")


def test_unknown_device_is_rejected():
    with pytest.raises(SuiteError, match=r"device 'tpu'.*choose from: cpu, cuda"):
        suite_of(device="tpu")


MORE_ERRORS = [
    ({"batch_sizes": [5000]}, r"--batch-size: batch size 5000 is larger than the training set of mnist1d_mlp\[.*\] \(4000 examples\)"),
    ({"tasks": ["mnist1d_mlp[num_samples=5]"]}, r"invalid knob num_samples=5 for task 'mnist1d_mlp': must be >= 20"),
    ({"activations": ["gelu[approximate=foo]"]}, r"invalid parameters \{'approximate': 'foo'\} for activation 'gelu'"),
    ({"activations": ["hardtanh[min_val=2.0,max_val=1.0]"]}, r"invalid parameters .* for activation 'hardtanh'"),
    ({"threads": 100000000}, r"invalid threads 100000000: must be an integer from 1 to 1024"),
    ({"seeds": [2**63]}, r"invalid seed 9223372036854775808: must be an integer from 0 to 2\*\*63-1"),
    ({"batch_sizes": [10**20]}, r"invalid batch_size 100000000000000000000"),
]


@pytest.mark.parametrize("axes, pattern", MORE_ERRORS)
def test_values_that_would_fail_later_are_refused_up_front(axes, pattern):
    with pytest.raises(SuiteError, match=pattern):
        suite_of(**axes)


@pytest.mark.parametrize(
    "first, second",
    [
        ({"optimizers": ["sgd[lr=1]"]}, {"optimizers": ["sgd[lr=1.0]"]}),
        ({"optimizers": ["sgd"], "lrs": [1]}, {"optimizers": ["sgd[lr=1.0]"]}),
        ({"optimizers": ["adam[betas=(0,0.999)]"]}, {"optimizers": ["adam[betas=(0.0,0.999)]"]}),
        ({"activations": ["leaky_relu"]}, {"activations": ["leaky_relu[negative_slope=0.01]"]}),
        ({"inits": ["kaiming_normal"]}, {"inits": ["kaiming_normal[mode=fan_in]"]}),
        ({"inits": ["xavier_uniform[gain=2]"]}, {"inits": ["xavier_uniform[gain=2.0]"]}),
        ({"device": "cpu"}, {"device": "cpu:3"}),
    ],
)
def test_one_configuration_written_two_ways_is_one_cell(first, second):
    assert suite_of(steps=[10], **first)[0].key == suite_of(steps=[10], **second)[0].key


def test_clip_thresholds_keep_every_digit():
    cells = suite_of(clips=["norm:0.1234567891", "norm:0.1234571", "norm:1.0"])
    assert [c.clip for c in cells] == ["norm:0.1234567891", "norm:0.1234571", "norm:1"]


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('name = "x"\n\n"steps" = 0\n', r"suite.toml, line 3: invalid step 0"),
        ('steps = 5\n[grid]\noptimizers = ["sgd"]\n', r"suite.toml, line 2: 'grid' must be a list of tables"),
    ],
)
def test_error_lines_for_quoted_keys_and_grid_tables(text, pattern):
    with pytest.raises(SuiteError, match=pattern):
        expand(parse_suite(text, "suite.toml"))
