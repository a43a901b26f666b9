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


def test_fp32_and_eager_leave_every_existing_key_unchanged():
    """Keys computed on main before precision and compile existed (commit f05fa44): the
    defaults must find every stored result again, not train it anew."""
    before = {
        "5665c671e3e2d9d7": {},
        "d1a8741fa0f7b190": {"tasks": ["mnist1d_mlp"], "steps": [50]},
    }
    for key, overrides in before.items():
        (cell,) = suite_of(**overrides)
        assert cell.key == key, overrides
        assert suite_of(**overrides, precision="fp32", compile=False)[0].key == key
    many = suite_of(
        tasks=["mnist1d_mlp[depth=8,width=64]"], optimizers=["adam", "sgd"], activations=["sigmoid"], inits=["standard"], clips=["norm:1"],
        schedules=["cosine"], validation=0.1, jacobian_every=10, detail_every=0, seeds=[0, 1], steps=[100],
    )
    assert [cell.key for cell in many] == ["c6b11d4b92f9ba53", "2250d0ec7cb0fba9", "2792febc0a31f9f1", "8732b34ef94a7272"]
    import hashlib

    default_keys = ",".join(cell.key for cell in expand(default_suite()))
    assert hashlib.sha256(default_keys.encode()).hexdigest()[:16] == "1430dd75f4e6c4d9"  # the default suite's 20 keys


def test_precision_and_compile_are_part_of_the_key_and_the_label_only_when_set():
    (plain,) = suite_of(steps=[10])
    (bf16,) = suite_of(steps=[10], precision="bf16")
    (compiled,) = suite_of(steps=[10], compile=True)
    (both,) = suite_of(steps=[10], precision="bf16", compile=True)
    assert len({plain.key, bf16.key, compiled.key, both.key}) == 4
    assert (bf16.precision, compiled.compile, both.precision, both.compile) == ("bf16", True, "bf16", True)
    assert "precision" not in plain.config() and "compile" not in plain.config()
    assert bf16.config()["precision"] == "bf16" and compiled.config()["compile"] is True
    assert "precision" not in plain.label and "compiled" not in plain.label
    assert both.label.endswith("precision=bf16 compiled")
    assert Cell.from_config(both.config()) == both
    assert Cell.from_config(plain.config()) == plain  # a config stored before they existed reads as fp32, eager


@pytest.mark.parametrize(
    "settings, pattern",
    [
        ({"precision": "fp64"}, r"--precision: invalid precision 'fp64'; choose from: fp32, tf32, bf16, fp16$"),
        ({"precision": "fp16"}, r"--precision: precision 'fp16' needs a CUDA device"),
        ({"precision": "tf32"}, r"--precision: precision 'tf32' is a CUDA tensor-core mode"),
        ({"compile": "yes"}, r"--compile: invalid compile 'yes': must be true or false$"),
    ],
)
def test_bad_precision_or_compile_is_refused_naming_the_choices(settings, pattern):
    with pytest.raises(SuiteError, match=pattern):
        suite_of(steps=[10], **settings)


def test_a_suite_file_sets_precision_and_compile_and_names_the_line_of_a_bad_one():
    cells = expand(parse_suite('steps = 10\nprecision = "bf16"\ncompile = true\n', "p.toml"))
    assert [(c.precision, c.compile) for c in cells] == [("bf16", True)]
    with pytest.raises(SuiteError, match=r"p.toml, line 2: invalid precision 'half'"):
        expand(parse_suite('steps = 10\nprecision = "half"\n', "p.toml"))


def test_fp16_is_refused_for_closure_optimizers_whose_step_a_loss_scaler_cannot_drive():
    """Checked by name where the cells run elsewhere (no CUDA needed here)."""
    suite = parse_suite("").with_overrides({"tasks": ["linreg"], "optimizers": ["lbfgs"], "steps": [5], "device": "cuda", "precision": "fp16"})
    with pytest.raises(SuiteError, match=r"--precision: precision 'fp16' runs with a loss scaler, which cannot drive 'lbfgs'"):
        expand(suite, local_devices=False)
    (cell,) = expand(suite.with_overrides({"precision": "bf16"}), local_devices=False)
    assert cell.precision == "bf16"
