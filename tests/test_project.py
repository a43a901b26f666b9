"""The project's own promises: CI runs the README's commands, and every import is declared."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_quick_start_is_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = _quick_start_commands()
    assert install_and_run.endswith("gradbench run")
    ci = (ROOT / ".ci" / "run").read_text()
    # CI makes the venv and installs exactly as the README says, then runs its test command.
    for part in install_and_test.split(" && "):
        assert part in ci, part


def _declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _imported_modules(folder: Path) -> set[str]:
    modules = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def test_every_third_party_import_is_declared_in_pyproject():
    declared = _declared_distributions()
    distributions = packages_distributions()
    imported = _imported_modules(ROOT / "gradbench") | _imported_modules(ROOT / "tests")
    test_helpers = {path.stem for path in (ROOT / "tests").rglob("*.py")}  # report_store, reproduction_runs, ...
    missing = []
    for module in sorted(imported):
        if module in sys.stdlib_module_names or module in ("gradbench", "tomli") or module in test_helpers:
            continue
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} (from {', '.join(sorted(names))})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_no_merge_conflict_markers_are_left_in_the_sources_or_docs():
    files = [ROOT / "README.md", ROOT / "CITATION.cff", ROOT / "pyproject.toml", *ROOT.glob("docs/*.md")]
    for folder in ("gradbench", "tests", "bench", "scripts"):
        files += [path for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".toml", ".md", ".sh")]
    marker = re.compile(r"^(<{7}|>{7}|={7})( |$)", re.MULTILINE)
    left = [f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}" for path in files for text in [path.read_text(encoding="utf-8")] for match in marker.finditer(text)]
    assert not left, f"merge conflict markers left in: {left}"


def test_every_file_the_docs_link_to_is_there_and_not_ignored_by_git():
    """A figure that is ignored stays on the machine that drew it: a fresh clone's docs would
    link to nothing."""
    links = []
    for page in [ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target):  # not a URL
                links.append((page.parent / target).resolve())
    assert links, "no local links found: the pattern is wrong"
    missing = [str(path.relative_to(ROOT)) for path in links if not path.exists()]
    assert not missing, f"the docs link to files that are not there: {missing}"
    if (ROOT / ".git").exists() and shutil.which("git"):
        relative = sorted({str(path.relative_to(ROOT)) for path in links})
        ignored = subprocess.run(["git", "check-ignore", *relative], cwd=ROOT, capture_output=True, text=True).stdout.split()
        assert not ignored, f"the docs link to files that git ignores: {ignored}"


def test_the_version_is_written_once():
    """gradbench.__version__ is the source: pyproject.toml reads it, CITATION.cff repeats it
    (CFF has no way to read it), and the installed metadata says the same."""
    from importlib.metadata import version

    import gradbench

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    citation = re.search(r"^version: (\S+)$", (ROOT / "CITATION.cff").read_text(), flags=re.M)
    assert citation is not None and citation.group(1) == gradbench.__version__
    assert version("gradbench") == gradbench.__version__


def test_the_wheel_builds_without_deprecation_warnings_and_holds_every_subpackage(tmp_path):
    """From a copy of the tracked files, so the build leaves nothing in the checkout."""
    import shutil
    import subprocess
    import zipfile

    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} is older than the 77 pyproject.toml asks for")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    source = tmp_path / "source"
    for name in tracked.stdout.split():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", str(source), "-w", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert "Deprecat" not in output, [line for line in output.splitlines() if "Deprecat" in line]
    (wheel,) = (tmp_path / "wheel").glob("gradbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "gradbench").rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in packages} <= names
    assert {"gradbench/py.typed", "gradbench/suites/default.toml"} <= names
