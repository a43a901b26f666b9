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

__all__ = ["MOVED", "install"]

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
    "gradbench.executors": ("gradbench.sweep.executors", "gradbench.sweep.executor", "gradbench.sweep.process_pool", "gradbench.run.context"),
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
# Names that changed with their module: (old module, old name) -> new name.
RENAMED = {("gradbench.executors", "Job"): "RunContext"}


def _warn(message: str) -> None:
    """Warn at the line that imported the old path (the first frame outside the import system)."""
    machinery = os.path.dirname(importlib.__file__)  # importlib.import_module's own frame
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(("<frozen importlib", machinery)) or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    if frame is None:
        warnings.warn(message, DeprecationWarning, stacklevel=2)
    else:
        warnings.warn_explicit(message, DeprecationWarning, frame.f_code.co_filename, frame.f_lineno, module=frame.f_globals.get("__name__"))


def _split_module(name: str, targets: Sequence[str]) -> types.ModuleType:
    """A module whose attributes are looked up in ``targets``, in order."""
    module = types.ModuleType(name, f"Moved: its names are now in {', '.join(targets)}.")

    def __getattr__(attribute: str) -> Any:
        wanted = RENAMED.get((name, attribute), attribute)
        for target in targets:
            found = importlib.import_module(target)
            if hasattr(found, wanted):
                return getattr(found, wanted)
        raise AttributeError(f"module {name!r} has no attribute {attribute!r} (it moved to {', '.join(targets)})")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED[spec.name]
        where = targets[0] if len(targets) == 1 else "; its names are in " + ", ".join(targets)
        _warn(f"{spec.name} moved to {where}; import from there (the old path will be removed)".replace("moved to ;", "was split"))
        if len(targets) == 1:
            return importlib.import_module(targets[0])
        return _split_module(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader())


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
