"""The package's layout is its architecture: subpackages in data-flow order, each importing only
from those before it, no import cycles, the executors blind to tasks, light modules free of
torch, and every 0.1 module path still importable."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import gradbench
from gradbench._lazy import _exports
from gradbench._moved import MOVED

PACKAGE = Path(gradbench.__file__).resolve().parent
# The data flow, upstream first: a subpackage may import from itself and those before it.
ORDER = ["axes", "tasks", "monitor", "grid", "run", "store", "sweep", "report", "reproduce"]
# Top-level modules anyone may import: no gradbench imports of their own (checked below).
SHARED = {"gradbench", "gradbench._lazy", "gradbench._moved", "gradbench.plugins"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, with_type_only: bool) -> set[str]:
    """The gradbench modules ``path`` imports, at module level or inside functions (lazily),
    and with ``with_type_only`` those under ``if TYPE_CHECKING:`` too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if not with_type_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                skipped |= {id(child) for statement in node.body for child in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("gradbench")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradbench") and node.level == 0:
            for alias in node.names:  # `from gradbench.report import plots` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if _exists(candidate) else node.module)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_every_module_lives_in_a_subpackage_of_the_data_flow_or_is_one_of_the_few_shared_ones():
    loose = sorted(m for m in MODULES if _subpackage(m) is None and m not in SHARED | {"gradbench.cli", "gradbench.__main__"})
    assert not loose, f"modules outside the subpackages {ORDER}: {loose}"


def test_each_subpackage_imports_only_from_those_upstream_of_it():
    wrong = []
    for module, path in MODULES.items():
        own = _subpackage(module)
        if own is None:
            continue
        for imported in _imports(path, with_type_only=True):
            other = _subpackage(imported)
            if other is not None and ORDER.index(other) > ORDER.index(own):
                wrong.append(f"{module} imports {imported} ({other} is downstream of {own})")
            if other is None and imported not in SHARED:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_shared_modules_import_nothing_of_gradbench_that_could_close_a_cycle():
    for module in SHARED - {"gradbench"}:
        assert _imports(MODULES[module], with_type_only=False) <= {"gradbench._lazy"}, module


def test_no_import_cycle_among_modules():
    graph = {module: {m for m in _imports(path, with_type_only=False) if m in MODULES and m != module} for module, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycle = path[path.index(imported):] + [imported] if imported in path else [module, imported]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_executors_know_nothing_about_tasks():
    for module, path in MODULES.items():
        if _subpackage(module) == "sweep":
            tasks = sorted(m for m in _imports(path, with_type_only=True) if _subpackage(m) == "tasks")
            assert not tasks, f"{module} imports {tasks}"


@pytest.mark.parametrize("statement", [
    "import gradbench",
    "import gradbench.cli",
    "import gradbench.axes.specs",
    "import gradbench.store",
    "from gradbench.store import Store",
    "import gradbench.monitor.diagnosis",
    "import gradbench.grid.cell, gradbench.run.result, gradbench.sweep.executor",
    "import gradbench; gradbench.Results",
])
def test_light_imports_do_not_import_torch(statement):
    code = f"{statement}; import sys; assert 'torch' not in sys.modules, 'torch was imported'; assert 'pandas' not in sys.modules, 'pandas was imported'"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr


# Every command that reads the store or the registries, in every form (each list, each report
# format, each export, each plot), and bad input to report: none of them needs torch.
_LISTS = ["tasks", "optimizers", "schedules", "activations", "clips", "inits"]
TORCH_FREE_COMMANDS = [
    ["--help"], ["--version"], ["list"], *(["list", kind] for kind in _LISTS),
    ["report"], ["report", "--format", "csv"], ["report", "--format", "latex"], ["report", "--format", "html", "-o", "{out}/r.html"],
    ["report", "--rows", "optimizer", "--columns", "dim", "--metric", "verdict"], ["report", "--profiles"],
    ["report", "--tuned", "--tune-on", "train_loss"], ["report", "--where", "task=linreg[dim=4,num_train=64]", "--where", "optimizer=sgd,adam[lr=0.1]"],
    *(["export", "--what", what] for what in ("runs", "evaluations", "steps", "layers", "activations", "jacobians")), ["export", "--what", "runs", "--format", "json"],
    ["diagnose"], ["reproduce", "--list"],
    ["plot", "curves", "-o", "{out}/c.png"], ["plot", "heatmap", "--where", "optimizer=sgd", "--where", "seed=0", "--where", "clip=none", "-o", "{out}/h.png"],
    ["plot", "depth", "-o", "{out}/d.png"], ["plot", "clip", "-o", "{out}/k.png"], ["plot", "profile", "-o", "{out}/p.svg"],
]
BAD_INPUT = [  # one line, exit 2, as before: the names, defaults and bounds behind them need no torch
    ["report", "--where", "optimizer=adamm"],
    ["report", "--where", "optimizer=lbfgs[line_search_fn=nope]"],
    ["report", "--where", "task=linreg[dim=0]"],
    ["report", "--where", "task=mnist1d_deep_cnn[depth=9]"],
    ["report", "--where", "task=nope"],
    ["list", "optimisers"],
]


@pytest.fixture(scope="module")
def torch_free_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight linreg runs (two optimizers, two clips, two seeds; they reach the target, so
    profiles have something to show), written by a tiny ``gradbench run``."""
    import contextlib
    import io

    from gradbench.cli import main

    db = tmp_path_factory.mktemp("light") / "light.db"
    grid = ["--task", "linreg[dim=4,num_train=64]", "--optimizer", "sgd,adam", "--lr", "0.1", "--clip", "none,norm:1", "--seeds", "0,1", "--steps", "100", "--record-every", "2"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", *grid, "--no-progress", "--db", str(db)]) == 0
    return db


def _run_cli_fresh(argv: list[str], cwd: Path) -> tuple[int, bool, str]:
    """``gradbench.cli.main(argv)`` in a fresh interpreter: its exit code, whether torch was
    imported, and what it wrote to stderr."""
    code = (
        "import sys\n"
        "from gradbench.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\n"
        "except SystemExit as exit:  # --help\n    code = exit.code\n"
        "sys.stdout.flush()\n"
        "print('torch' in sys.modules, code, file=sys.stderr)\n"
    )
    process = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, cwd=cwd)
    *message, last = process.stderr.rstrip("\n").split("\n")
    imported, exit_code = last.split()
    return int(exit_code), imported == "True", "\n".join(message)


@pytest.mark.parametrize("argv", TORCH_FREE_COMMANDS, ids=" ".join)
def test_commands_that_read_the_store_or_the_registries_do_not_import_torch(argv, torch_free_store):
    out = torch_free_store.parent
    argv = [arg.format(out=out) for arg in argv] + (["--db", str(torch_free_store)] if argv[0] in ("report", "export", "diagnose", "plot") else [])
    exit_code, imported, stderr = _run_cli_fresh(argv, out)
    assert exit_code == 0, stderr
    assert not imported, f"gradbench {' '.join(argv)} imported torch"


@pytest.mark.parametrize("argv", BAD_INPUT, ids=" ".join)
def test_bad_input_to_light_commands_is_one_line_exit_2_without_torch(argv, torch_free_store):
    argv = [*argv, "--db", str(torch_free_store)] if argv[0] == "report" else argv
    exit_code, imported, stderr = _run_cli_fresh(argv, torch_free_store.parent)
    assert exit_code == 2 and len(stderr.splitlines()) == 1 and stderr.startswith("gradbench: error: "), stderr
    assert not imported, f"gradbench {' '.join(argv)} imported torch"


def test_a_plugin_registering_by_path_adds_entries_without_importing_torch(tmp_path):
    """A plugin may name its factories by path ("module:attribute"): gradbench lists them, and
    imports them only when a run builds one."""
    plugin = tmp_path / "lazy_plugin.py"
    plugin.write_text(
        "from gradbench.axes.activations import register_activation\n"
        "from gradbench.axes.optimizers import register_optimizer\n"
        "register_optimizer('sgd_plain', 'torch.optim:SGD', defaults={'lr': 0.05}, description='SGD, registered by path', needs_closure=False)\n"
        "register_activation('tanhshrink', 'torch.nn:Tanhshrink', gain=1.0, kind='saturating', description='x - tanh(x), by path')\n",
        encoding="utf-8",
    )
    for kind, name in (("optimizers", "sgd_plain"), ("activations", "tanhshrink")):
        process = subprocess.run(
            [sys.executable, "-c", "import sys; from gradbench.cli import main; code = main(sys.argv[1:]); assert 'torch' not in sys.modules; sys.exit(code)",
             "list", kind, "--plugin", str(plugin)],
            capture_output=True, text=True, timeout=60,
        )
        assert process.returncode == 0, process.stderr
        assert name in process.stdout


PACKAGES = sorted(str(path) for path in PACKAGE.rglob("__init__.py") if "TYPE_CHECKING" in path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("init", PACKAGES, ids=lambda p: _module_name(Path(p)))
def test_every_lazy_export_resolves_and_is_listed(init):
    package = importlib.import_module(_module_name(Path(init)))
    exports = _exports(init)
    assert exports, "a lazy package exports something"
    for name, (module, original) in exports.items():
        assert getattr(package, name) is getattr(importlib.import_module(module), original), name
    assert set(exports) <= set(dir(package)) and sorted(exports) == package.__all__
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018


def test_a_deferred_function_imports_its_module_on_the_first_call_only():
    code = (
        "import sys\n"
        "from gradbench._lazy import Deferred\n"
        "shorten = Deferred('textwrap:shorten', width=12, placeholder='...')\n"
        "assert 'textwrap' not in sys.modules, 'imported before the call'\n"
        "assert shorten('the quick brown fox') == 'the quick...'\n"
        "assert repr(shorten) == \"Deferred('textwrap:shorten', width=12, placeholder='...')\"\n"
    )
    process = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr


@pytest.mark.parametrize(("path", "message"), [
    ("torch.optim.SGD", r"invalid path 'torch.optim.SGD': expected 'package.module:attribute'"),
    ("no_such_module_here:thing", r"cannot import 'no_such_module_here:thing': No module named 'no_such_module_here'"),
    ("json:no_such_name", r"cannot import 'json:no_such_name': module 'json' has no attribute 'no_such_name'"),
])
def test_a_bad_path_is_one_value_error_naming_it(path, message):
    from gradbench._lazy import resolve

    with pytest.raises(ValueError, match=message):
        resolve(path)


# The public names of gradbench 0.1's modules (their __all__), each still importable from the
# module's old path.
OLD_PUBLIC = {
    "activation_stats": ["SATURATION_SLOPE", "ActivationRecorder", "activation_kind"],
    "activations": ["ActivationSpec", "ACTIVATIONS", "register_activation", "list_activations", "build_activation", "check_activation", "activation_gain"],
    "benchmark": ["TimedStep", "rounds_for", "run_benchmark", "compare_runner_to_handwritten", "interleaved_times", "phase_median", "overhead_ratios", "machine_info", "CLOCKS"],
    "claims": ["Claimant", "Heartbeat", "HEARTBEAT_S", "LEASE_S", "is_live", "machine_id", "process_start"],
    "clipping": ["Clipping", "CLIPS", "parse_clipping", "list_clips", "global_norm"],
    "data": ["Dataset", "cache_dir", "load_mnist1d", "load_digits", "make_adding_problem", "load_quadratic_deep", "quadratic_deep_hessian", "make_linreg", "linreg_optimum", "on_device", "validation_split", "train_eval_subset"],
    "diagnose": ["VERDICTS", "Thresholds", "parse_thresholds", "Verdict", "RunHealth", "health_from_history", "diagnose"],
    "env": ["environment", "device_name", "check_device", "parse_device"],
    "executors": ["Executor", "ExecutorError", "WorkerStartError", "Job", "SerialExecutor", "ProcessExecutor", "EXECUTORS", "make_executor", "check_pooled_devices", "crashed_result", "visible_gpus"],
    "export": ["EXPORTS", "EXPORT_FORMATS", "export"],
    "files": ["write_atomically"],
    "grid": ["Cell", "Suite", "SuiteError", "AXES", "SETTINGS", "load_suite", "default_suite", "parse_suite", "expand"],
    "history": ["NonFinite", "ActivationSite", "MonitorHistory", "QUANTITIES", "first_last_ratio", "finite_ratios", "window", "WINDOW"],
    "html_report": ["html_report"],
    "image_data": ["DataOptions", "DatasetUnavailable", "REAL_DATASETS", "default_data_dir", "load_image_dataset"],
    "init": ["InitSpec", "INITS", "register_init", "list_inits", "initialise", "fans", "check_init_params"],
    "layer_norms": ["model_layers", "LayerNorms"],
    "monitor": ["GradientMonitor", "MonitorHistory", "NonFinite", "model_layers", "DEFAULT_EVERY", "DETAIL_FACTOR"],
    "optimizers": ["OptimizerSpec", "OPTIMIZERS", "register_optimizer", "list_optimizers", "get_optimizer", "resolve_hyperparameters", "build_optimizer"],
    "pivot": ["Metric", "METRICS", "CellStats", "Pivot", "PivotReport", "run_axes", "build_pivots", "axis_choices", "select_runs", "task_label", "aggregate", "knobs_of"],
    "plots": ["PLOTS", "CURVE_VALUES", "training_curves", "grad_heatmap", "depth_profile", "clip_rate", "profile_plot", "save_figure", "figure_bytes"],
    "plugins": ["PluginError", "load_plugins"],
    "profiles": ["PROFILE_MEASURES", "Profiles", "performance_profiles", "profile_text", "profile_csv", "TAUS"],
    "ray_executor": ["RayExecutor"],
    "registry": ["Registry", "closest_match"],
    "report": ["Table", "build_table", "render", "FORMATS", "cell_texts", "config_text", "constants_text", "verdict_text"],
    "schema": ["APPLICATION_ID", "SCHEMA_VERSION", "METRIC_COLUMNS", "LAYER_STATISTICS", "ACTIVATION_STATISTICS", "CHILD_TABLES", "create_schema", "migrate"],
    "specs": ["parse_spec", "format_spec", "format_value", "split_top_level", "parse_value"],
    "store": ["Store", "StoreError", "DEFAULT_DB", "METRIC_COLUMNS", "LAYER_STATISTICS", "ACTIVATION_STATISTICS"],
    "sweep": ["SweepSummary", "run_sweep"],
    "tables": ["TABLE_FORMATS", "render_pivots", "markdown", "latex", "csv_text", "html_tables", "cell_text", "latex_escape"],
    "timing": ["StepTimer"],
    "train": ["RunResult", "Evaluation", "Session", "Batches", "prepare", "train_step", "run_cell", "evaluate", "READBACK_STEPS"],
    "tuning": ["TUNE_ON", "Tuned", "tune"],
}


@pytest.mark.parametrize("old", sorted(OLD_PUBLIC))
def test_every_old_module_path_still_gives_its_public_names(old):
    """A plugin or script written against 0.1's flat layout keeps working; a module that moved
    says where to, once, as a DeprecationWarning at the importing line."""
    name = f"gradbench.{old}"
    if name in MOVED:  # imported afresh, to see its warning (never a real module: that would leave two copies)
        sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
        values = {attribute: getattr(module, attribute) for attribute in OLD_PUBLIC[old]}
    moved = [w for w in caught if issubclass(w.category, DeprecationWarning) and name in str(w.message)]
    if name in MOVED:
        assert len(moved) == 1 and MOVED[name][0] in str(moved[0].message)
        assert moved[0].filename == __file__  # it points at the line that imported the old path
    else:
        assert not moved  # a package that kept the name (gradbench.grid, ...) or an unmoved module


def test_an_old_path_that_was_split_names_every_new_place_for_a_missing_name():
    import gradbench.executors as old  # noqa: F401  (the import under test)

    with pytest.raises(AttributeError, match=r"gradbench.executors' has no attribute 'nope' \(it moved to gradbench.sweep.executor_names, "):
        old.nope  # noqa: B018


def test_after_import_gradbench_every_subpackage_and_old_module_is_an_attribute():
    """As in 0.1, whose __init__ imported every module: gradbench.grid.expand, gradbench.optimizers."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import gradbench\n"
        "assert gradbench.grid.expand is gradbench.expand and gradbench.store.Store is gradbench.Store\n"
        "try:\n    gradbench.optimizers\nexcept DeprecationWarning as warning:\n    assert 'gradbench.axes.optimizers' in str(warning)\n"
        "else:\n    raise AssertionError('no warning')\n"
        "try:\n    gradbench.no_such_module\nexcept AttributeError:\n    pass\n"
    )
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr


def test_an_old_path_leaves_the_moved_module_its_own_spec():
    import gradbench.axes.specs as specs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sys.modules.pop("gradbench.specs", None)
        old = importlib.import_module("gradbench.specs")
    assert old is specs and specs.__spec__.name == "gradbench.axes.specs" and specs.__name__ == "gradbench.axes.specs"
    assert importlib.reload(specs) is specs and specs.__name__ == "gradbench.axes.specs"


def test_old_signatures_that_changed_still_work_with_a_warning(tmp_path):
    """0.1's Job(data_options, plugins, workers) and run_sweep(..., data_options=, plugins=)."""
    from gradbench.grid import expand, parse_suite
    from gradbench.run import RunContext
    from gradbench.store import Store
    from gradbench.sweep import run_sweep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from gradbench.executors import Job
    assert Job(plugins=["p.py"], workers=3) == RunContext(plugins=("p.py",), concurrent_runs=3)
    cells = expand(parse_suite('tasks = ["linreg"]\nsteps = 3'))
    with Store.open(tmp_path / "r.db", create=True) as store, pytest.warns(DeprecationWarning, match=r"job=RunContext\(data_options=\.\.\., plugins=\.\.\.\)"):
        summary = run_sweep(cells, store, progress=False, plugins=[])
    assert summary.statuses["done"] == 1
    with Store.open(tmp_path / "r.db", create=True) as store, pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        run_sweep(cells, store, progress=False, nope=1)


def test_from_a_split_old_module_import_star_gives_its_names():
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exec("from gradbench.train import *", namespace)  # noqa: S102
    assert {"run_cell", "RunResult", "prepare"} <= set(namespace)
