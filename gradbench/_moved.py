"""The module paths of gradbench 0.1's flat layout, still importable, with a
``DeprecationWarning`` naming the new place.

gradbench 0.1 kept every module side by side (``gradbench.optimizers``, ``gradbench.train``,
...); they now live in subpackages named for the part of the data flow they belong to. A
plugin or script written against an old path keeps working: the old name is the new module
itself where it moved whole, and a module that looks names up in the new modules where it was
split. The packages that kept an old module's name (``gradbench.grid``, ``monitor``, ``store``,
``sweep``, ``report``, ``tasks``) export that module's public names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MOVED", "SHIMS", "install"]

# Old module -> the new modules its names are found in (the first is named in the warning).
MOVED: dict[str, tuple[str, ...]] = {
    "gradbench.registry": ("gradbench.axes.registry",),
    "gradbench.specs": ("gradbench.axes.specs",),
    "gradbench.optimizers": ("gradbench.axes.optimizers",),
    "gradbench.activations": ("gradbench.axes.activations",),
    "gradbench.clipping": ("gradbench.axes.clipping",),
    "gradbench.init": ("gradbench.axes.inits",),
    "gradbench.env": ("gradbench.run.environment", "gradbench.axes.devices"),
    "gradbench.data": ("gradbench.tasks.datasets",),
    "gradbench.image_data": ("gradbench.tasks.image_datasets",),
    "gradbench.layer_norms": ("gradbench.monitor.layer_norms",),
    "gradbench.activation_stats": ("gradbench.monitor.activation_stats",),
    "gradbench.history": ("gradbench.monitor.history",),
    "gradbench.diagnose": ("gradbench.monitor.diagnosis",),
    "gradbench.train": ("gradbench.run.train", "gradbench.run.result"),
    "gradbench.timing": ("gradbench.run.timing",),
    "gradbench.benchmark": ("gradbench.run.benchmark",),
    "gradbench.schema": ("gradbench.store.schema",),
    "gradbench.claims": ("gradbench.store.claims",),
    "gradbench.executors": ("gradbench.sweep.executor_names", "gradbench.sweep.executor", "gradbench.sweep.process_pool", "gradbench.run.context"),
    "gradbench.ray_executor": ("gradbench.sweep.ray_executor",),
    "gradbench.pivot": ("gradbench.report.pivot",),
    "gradbench.tables": ("gradbench.report.tables",),
    "gradbench.tuning": ("gradbench.report.tuning",),
    "gradbench.profiles": ("gradbench.report.profiles",),
    "gradbench.plots": ("gradbench.report.plots",),
    "gradbench.export": ("gradbench.report.export",),
    "gradbench.files": ("gradbench.report.files",),
    "gradbench.html_report": ("gradbench.report.html_page",),
}
def _job(data_options: Any = None, plugins: Sequence[str] = (), workers: int = 1) -> Any:
    """0.1's ``gradbench.executors.Job(data_options, plugins, workers)``: a ``RunContext``."""
    run_context = importlib.import_module("gradbench.run.context").RunContext  # by name, as every target here
    return run_context(data_options=data_options, plugins=tuple(plugins), concurrent_runs=workers)


# Old names whose signature changed too: called as they were, they give the new object.
SHIMS: dict[str, dict[str, Any]] = {"gradbench.executors": {"Job": _job}}


def _warn(message: str) -> None:
    """Warn at the line that imported the old path (the first frame outside the import system)."""
    machinery = os.path.dirname(importlib.__file__)  # importlib.import_module's own frame
    ours = (__file__, os.path.join(os.path.dirname(__file__), "_lazy.py"))  # and gradbench.<old> as an attribute
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith(("<frozen importlib", machinery)) or frame.f_code.co_filename in ours):
        frame = frame.f_back
    if frame is None:
        warnings.warn(message, DeprecationWarning, stacklevel=2)
    else:
        warnings.warn_explicit(message, DeprecationWarning, frame.f_code.co_filename, frame.f_lineno, module=frame.f_globals.get("__name__"))


def _split_module(name: str, targets: Sequence[str]) -> types.ModuleType:
    """A module whose attributes are looked up in ``targets``, in order."""
    module = types.ModuleType(name, f"Moved: its names are now in {', '.join(targets)}.")

    def __getattr__(attribute: str) -> Any:
        if attribute == "__all__":  # for 'from gradbench.train import *'
            names = {n for target in targets for n in getattr(importlib.import_module(target), "__all__", ())}
            return sorted(names | set(SHIMS.get(name, {})))
        if attribute in SHIMS.get(name, {}):
            return SHIMS[name][attribute]
        for target in targets:
            found = importlib.import_module(target)
            if hasattr(found, attribute):
                return getattr(found, attribute)
        raise AttributeError(f"module {name!r} has no attribute {attribute!r} (it moved to {', '.join(targets)})")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


class _MovedLoader(importlib.abc.Loader):
    def __init__(self) -> None:
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED[spec.name]
        if len(targets) == 1:
            _warn(f"{spec.name} moved to {targets[0]}; import it from there (the old path will be removed)")
            module = importlib.import_module(targets[0])
            self._spec = module.__spec__  # the import system sets the old path's spec on it next
            return module
        _warn(f"{spec.name} was split: its names are in {', '.join(targets)}; import them from there (the old path will be removed)")
        return _split_module(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        if self._spec is not None:  # the moved module keeps its own spec (reload, __name__)
            module.__spec__ = self._spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader())


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
