"""Plugins: user modules that register their own tasks, optimizers, activations or inits.

A script that calls ``register_optimizer`` before ``run_sweep`` works with the serial executor,
but a worker process or a Ray worker on another machine starts from a fresh interpreter that
never ran that script. Naming the module as a plugin (``gradbench run --plugin mymodule`` or
``--plugin path/to/file.py``) makes the driver import it before the grid is checked, and every
worker import it before it runs a cell, so all of them see the same registries.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PluginError", "load_plugins"]

_loaded: dict[str, str] = {}  # plugin as given -> module name, in this process


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
