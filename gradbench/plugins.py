"""Plugins: user modules that register their own tasks, optimizers, activations or inits.

A script that calls ``register_optimizer`` before ``run_sweep`` works with the serial executor,
but a worker process or a Ray worker on another machine starts from a fresh interpreter that
never ran that script. Naming the module as a plugin (``gradbench run --plugin mymodule`` or
``--plugin path/to/file.py``) makes the driver import it before the grid is checked, and every
worker import it before it runs a cell, so all of them see the same registries.

Installed packages are found the way Python finds plugins: an entry point in the group
``gradbench.plugins`` (``ENTRY_POINT_GROUP``) of any installed distribution names a module,
imported for its registrations, or a function (``module:function``), called once with no
arguments. They are loaded once per process, lazily: when a registry is asked for a name it
does not hold or is listed (``gradbench.axes.registry``), and up front by ``gradbench run``'s
driver and by every worker before its first cell (``RunContext.start``), so that they all
hold the same registries, replaced built-ins included. ``--help`` and commands that find every
name they need never scan the installed distributions. ``GRADBENCH_DISABLE_PLUGIN_AUTOLOAD=1``
turns the entry points off (as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest): the way
out when an installed plugin is broken.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["PluginError", "load_plugins", "load_entry_points", "ENTRY_POINT_GROUP", "AUTOLOAD_OFF"]

ENTRY_POINT_GROUP = "gradbench.plugins"
AUTOLOAD_OFF = "GRADBENCH_DISABLE_PLUGIN_AUTOLOAD"

_loaded: dict[str, str] = {}  # plugin as given -> module name, in this process
_entry_points_loaded: set[tuple[str, str]] = set()  # (name, value) of each loaded entry point
_entry_points_started = False  # set before the first entry point is imported: a plugin that
# asks a registry for a missing name while it is imported must not start the loading again
_entry_points_lock = threading.RLock()


class PluginError(ValueError):
    """A plugin that cannot be imported."""


def _module_name(path: Path) -> str:
    return "gradbench_plugin_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))


def load_plugins(plugins: Iterable[str]) -> None:
    """Import each plugin once per process: a module name (``package.module``, importable
    here) or the path of a ``.py`` file.

    Raises:
        PluginError: naming the plugin and why it could not be imported (not found, or the
            error its import raised).
    """
    for plugin in plugins:
        if plugin in _loaded:
            continue
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).expanduser()
                if not path.is_file():
                    raise PluginError(f"plugin file {plugin!r} does not exist")
                name = _module_name(path)
                if name not in sys.modules:
                    spec = importlib.util.spec_from_file_location(name, path)
                    assert spec is not None and spec.loader is not None
                    module = importlib.util.module_from_spec(spec)
                    sys.modules[name] = module
                    try:
                        spec.loader.exec_module(module)
                    except BaseException:
                        del sys.modules[name]
                        raise
            else:
                name = plugin
                importlib.import_module(plugin)
        except PluginError:
            raise
        except ModuleNotFoundError as error:
            raise PluginError(f"plugin {plugin!r} cannot be imported: {error}; give an importable module name or a .py file") from None
        except SystemExit as error:  # a script's sys.exit() would end gradbench without a word
            raise PluginError(f"plugin {plugin!r} called sys.exit({error.code!r}) while it was imported; a plugin should only register things") from None
        except Exception as error:
            raise PluginError(f"plugin {plugin!r} failed to import: {type(error).__name__}: {error}") from None
        _loaded[plugin] = name


def _describe(entry_point: Any) -> str:
    """``'name' (value, from distribution version)``: what a user needs to find the culprit."""
    dist = getattr(entry_point, "dist", None)
    source = f", from {dist.name} {dist.version}" if dist is not None else ""
    return f"{entry_point.name!r} ({entry_point.value}{source})"


def load_entry_points() -> None:
    """Load every ``gradbench.plugins`` entry point of the installed distributions, once per
    process (a call after the first returns at once, as does one while they are loading);
    nothing where ``GRADBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to anything but ``""`` or ``0``.

    Raises:
        PluginError: naming the entry point, its distribution and the error its import (or
            its function) raised. The others stay loaded; a later call tries it again.
    """
    global _entry_points_started
    if _entry_points_started or os.environ.get(AUTOLOAD_OFF, "") not in ("", "0"):
        return
    with _entry_points_lock:
        if _entry_points_started:
            return
        _entry_points_started = True
        try:
            from importlib.metadata import entry_points  # here: --help never pays for it

            for entry_point in entry_points(group=ENTRY_POINT_GROUP):
                identity = (entry_point.name, entry_point.value)
                if identity in _entry_points_loaded:  # one distribution found twice on the path
                    continue
                try:
                    loaded = entry_point.load()
                    if entry_point.attr is not None and callable(loaded):
                        loaded()
                except SystemExit as error:
                    raise PluginError(f"plugin entry point {_describe(entry_point)} called sys.exit({error.code!r}) while it was loaded; a plugin should only register things") from None
                except Exception as error:
                    raise PluginError(
                        f"plugin entry point {_describe(entry_point)} failed to load: {type(error).__name__}: {error}; "
                        f"fix or uninstall it, or set {AUTOLOAD_OFF}=1"
                    ) from None
                _entry_points_loaded.add(identity)
        except BaseException:
            _entry_points_started = False  # the next call tries the ones not loaded again
            raise
