"""Lazy exports for package ``__init__`` files (as scientific Python's SPEC 1 describes): a
name is imported from its module the first time it is used. So ``import gradbench`` and
``gradbench --help`` do not import torch, and a light module (the store, the spec parser) can
be imported without the heavy ones beside it.

A submodule is an attribute of its package too, imported on first use (``gradbench.grid.expand``
after ``import gradbench``). A package lists its exports once, as imports under ``if TYPE_CHECKING:`` (which type checkers
and editors read); ``attach`` reads that block from the package's source and imports each name
from there on first use.

Registries name their built-in factories the same way, by path (``"torch.optim:SGD"``,
``resolve``; a function with some arguments bound, ``Deferred``), so that listing or checking
their entries, and reading the store, import no torch: only building one does.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["attach", "resolve", "Deferred"]


def _exports(init_file: str) -> dict[str, tuple[str, str]]:
    """Name -> (module, name there) of every ``from MODULE import NAME [as ALIAS]`` under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    exports: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module and statement.level == 0:
                    for alias in statement.names:
                        exports[alias.asname or alias.name] = (statement.module, alias.name)
    return exports


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``, whose ``__init__`` is
    ``init_file``."""
    exports = _exports(init_file)

    def __getattr__(name: str) -> Any:
        if name in exports:
            module, original = exports[name]
            value = getattr(importlib.import_module(module), original)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            # A submodule, as after 'import gradbench' in 0.1, which imported them all
            # (gradbench.grid.expand, and the old paths gradbench._moved keeps).
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # found once, then a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)


@functools.lru_cache(maxsize=None)
def resolve(path: str) -> Any:
    """The object ``"package.module:attribute"`` names, its module imported on first use.

    Raises:
        ValueError: naming the path, if it is malformed, or its module or attribute is missing.
    """
    module, colon, attribute = path.partition(":")
    if not (colon and module and attribute):
        raise ValueError(f"invalid path {path!r}: expected 'package.module:attribute'")
    try:
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import {path!r}: {error}") from None
    return value


class Deferred:
    """A function named by path with some keyword arguments bound: ``functools.partial`` of a
    function whose module (and torch with it) is imported only on the first call.

    Args:
        path: ``"package.module:function"``.
        keywords: Passed on every call, before the caller's own.
    """

    def __init__(self, path: str, /, **keywords: Any) -> None:
        self.path = path
        self.keywords = keywords

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return resolve(self.path)(*args, **self.keywords, **kwargs)

    def __repr__(self) -> str:
        bound = "".join(f", {key}={value!r}" for key, value in self.keywords.items())
        return f"Deferred({self.path!r}{bound})"
