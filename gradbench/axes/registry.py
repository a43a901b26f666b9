"""One generic name -> entry registry, shared by optimizers, activations, inits, clips and tasks.

Unknown names raise a ``ValueError`` that lists every valid choice and the closest one, so a
typo on the command line is answered with the fix rather than a ``KeyError``. A name not found,
and a listing, first load the installed plugins' entry points (``gradbench.plugins``), once
per process: a name an installed package registers is found without being named anywhere.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from gradbench.axes.specs import shown
from gradbench.plugins import load_entry_points

__all__ = ["Registry", "closest_match"]

EntryT = TypeVar("EntryT")
# The names that the name[key=value] syntax (specs.py) can spell.
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def closest_match(name: str, choices: list[str]) -> str | None:
    """Return the choice closest to ``name`` (by difflib ratio), or ``None`` if none is close."""
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return matches[0] if matches else None


class Registry(Generic[EntryT]):
    """An ordered mapping from names to entries of one kind.

    Args:
        kind: What the entries are, in the singular ("optimizer", "activation", ...); used in
            error messages.
        left_out: Names deliberately not registered, with the reason: asking for one is
            answered with the reason, not a guess at a typo.
    """

    def __init__(self, kind: str, left_out: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, EntryT] = {}
        self._left_out = dict(left_out or {})

    def register(self, name: str, entry: EntryT, *, overwrite: bool = False) -> EntryT:
        """Add ``entry`` under ``name``.

        Raises:
            ValueError: if ``name`` is not a lower-case identifier, or is taken and
                ``overwrite`` is false.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"invalid {self.kind} name {name!r}: start with a lower-case letter, then lower-case letters, digits and '_'"
            )
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (used by tests and by users replacing a built-in)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> EntryT:
        """Return the entry registered under ``name``.

        Raises:
            ValueError: naming ``name``, the valid choices and the closest one.
        """
        if name not in self._entries:
            load_entry_points()  # an installed plugin may register it
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        load_entry_points()  # the choices include what installed plugins register
        choices = list(self._entries)
        if name in self._left_out:
            return f"{self.kind} {shown(name)} is left out: it {self._left_out[name]}; choose from: {', '.join(choices)}"
        hint = closest_match(name, choices + list(self._left_out))
        if hint in self._left_out:  # a typo of a name left out: say so, not a far registered one
            suggestion = f" (the closest, {hint!r}, is left out: it {self._left_out[hint]})"
        else:
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
        return f"unknown {self.kind} {shown(name)}{suggestion}; choose from: {', '.join(choices)}"

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the shell-style ``pattern``, in registration order."""
        load_entry_points()
        return [name for name in self._entries if fnmatch.fnmatchcase(name, pattern)]

    def items(self) -> list[tuple[str, EntryT]]:
        load_entry_points()
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        load_entry_points()
        return iter(self._entries)

    def __len__(self) -> int:
        load_entry_points()
        return len(self._entries)
