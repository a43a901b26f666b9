"""The ``name[key=value,...]`` syntax shared by the CLI, suite files and run labels.

``adam[lr=1e-3,betas=(0.9,0.99)]`` names a registered entry and sets some of its parameters;
``format_spec`` writes the same syntax back with sorted keys (as benchopt prints its runs), so a
label can be pasted into the command line to rerun exactly that configuration.
"""

from __future__ import annotations

import ast
import re
import warnings
from typing import Any

__all__ = ["parse_spec", "format_spec", "format_value", "split_top_level", "parse_value", "plain_value", "shown", "outside", "bounds_text", "MAX_VALUE_CHARS"]

# Longer values are refused before Python's parser sees them (a long enough nesting overflows
# its stack: MemoryError); no hyper-parameter or knob needs more.
MAX_VALUE_CHARS = 1000
_MAX_NAME_CHARS = 100
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# A class named by import path, ``package.module:ClassName`` (optimizers taken without registration).
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
_OPEN = {"[": "]", "(": ")", "{": "}"}


def shown(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut short for an error line when it is long."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def outside(value: float, low: float | None, high: float | None) -> bool:
    """``value < low`` or ``value > high``, a ``None`` bound open (knob and hyper-parameter
    bounds; NaN is outside nothing: finiteness is the caller's to check)."""
    return (low is not None and value < low) or (high is not None and value > high)


def bounds_text(low: float | None, high: float | None) -> str:
    """``>= low and <= high`` for an error line, a ``None`` bound left out (``""``: neither)."""
    return " and ".join(text for text in (f">= {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else "") if text)


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split ``text`` on ``separator`` except inside brackets or parentheses.

    Raises:
        ValueError: on unbalanced brackets.
    """
    parts: list[str] = []
    depth: list[str] = []
    current: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if quote is not None:  # inside a quoted string nothing is structure
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True  # \' does not end a '-quoted string
            elif char == quote:
                quote = None
            current.append(char)
            continue
        if char in ("'", '"'):
            quote = char
        elif char in _OPEN:
            depth.append(_OPEN[char])
        elif char in _OPEN.values():
            if not depth or depth.pop() != char:
                raise ValueError(f"unbalanced {char!r} in {shown(text)}")
        if char == separator and not depth:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if quote is not None:
        raise ValueError(f"unclosed quote {quote} in {shown(text)}")
    if depth:
        raise ValueError(f"unclosed bracket in {shown(text)}: {depth[-1]!r} is missing")
    parts.append("".join(current).strip())
    return parts


class _BadValue(ValueError):
    """A value that cannot be read: what is wrong, and (apart, so that a caller can name the
    parameter between them) what to give instead."""

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem}: {hint}" if hint else problem)
        self.problem, self.hint = problem, hint


_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None, "null": None, "inf": float("inf")}


class _BareWords(ast.NodeTransformer):
    """Inside a tuple as on its own: ``true``, ``false``, ``none``, ``inf`` are those values, and
    any other bare word (``fan_in``) is a string."""

    def visit_Name(self, node: ast.Name) -> ast.Constant:
        value = _WORDS[node.id.lower()] if node.id.lower() in _WORDS else node.id
        return ast.copy_location(ast.Constant(value), node)


_UNSUPPORTED = "give a number, a string, true/false, none, or a tuple of them"
_INT64_MAX = 2**63 - 1


def plain_value(value: Any) -> Any:
    """``value`` as a cell can hold it (lists made tuples, inner ones too): a number, string,
    boolean, ``None`` or a tuple of them; a cell's key is JSON and a cell is hashable.

    Raises:
        ValueError: for anything else (bytes, complex, sets, dicts, objects), and for integers
            beyond 64 bits.
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT64_MAX:
        raise ValueError(f"integer {value} is out of range")  # a float would overflow; SQLite holds 64 bits
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return tuple(plain_value(item) for item in value)
    raise ValueError(f"unsupported value {value!r}")


def parse_value(text: str) -> Any:
    """Parse one parameter value: a Python literal, ``true``/``false``, or a bare word (a string).

    ``1e-3`` -> 0.001, ``(0.9,0.99)`` -> (0.9, 0.99), ``batch`` -> "batch". Only numbers,
    strings, booleans, ``none`` and tuples (or lists, read as tuples) of them are values. Anything
    else raises ``ValueError``: malformed text (``1e-3x``, ``(0.9``), other literals (``b'x'``,
    ``1j``, ``{1: 2}``, ``set()``) and text over ``MAX_VALUE_CHARS`` characters.
    """
    text = text.strip()
    if len(text) > MAX_VALUE_CHARS:
        raise _BadValue(f"value {shown(text, 40)} is too long", f"at most {MAX_VALUE_CHARS} characters")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if lowered in ("inf", "+inf", "-inf"):
        return float(lowered)
    try:
        with warnings.catch_warnings():  # an invalid escape in a string warns: one line only
            warnings.simplefilter("ignore")
            value = ast.literal_eval(_BareWords().visit(ast.parse(text, mode="eval")))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        # TypeError: an unhashable set member or dict key ({[1]: 2}); MemoryError and
        # RecursionError: nesting too deep for Python's parser.
        if _BARE_WORD.match(text):
            return text
        raise _BadValue(f"malformed value {shown(text)}") from None
    try:
        return plain_value(value)
    except ValueError as error:
        if str(error).startswith("integer"):
            raise _BadValue(f"integer out of range in {shown(text, 40)}", "at most 2**63-1 in size") from None
        raise _BadValue(f"unsupported value {shown(text)}", _UNSUPPORTED) from None


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``name[key=value,...]`` into the name and a dict of parameters. The name is a
    registry name or an import path (``package.module:ClassName``); which axes take paths is
    theirs to say (an unknown name is the registry's error).

    Raises:
        ValueError: naming the malformed part.
    """
    text = text.strip()
    if "[" in text:
        if not text.endswith("]"):
            raise ValueError(f"malformed spec {shown(text)}: expected name[key=value,...]")
        name, _, body = text[:-1].partition("[")
    else:
        name, body = text, ""
    name = name.strip()
    if len(name) > _MAX_NAME_CHARS or not (_NAME.match(name) or _PATH.match(name)):
        raise ValueError(f"malformed name {shown(name)} in {shown(text)}")
    params: dict[str, Any] = {}
    if body.strip():
        for item in split_top_level(body):
            key, equals, raw = item.partition("=")
            key = key.strip()
            if not equals or len(key) > _MAX_NAME_CHARS or not _NAME.match(key):
                raise ValueError(f"malformed parameter {shown(item)} in {shown(text)}: expected key=value")
            if key in params:
                raise ValueError(f"parameter {key!r} given twice in {shown(text)}")
            try:
                params[key] = parse_value(raw)
            except _BadValue as error:
                hint = f": {error.hint}" if error.hint else ""
                raise ValueError(f"{error.problem} for {key!r} in {shown(text)}{hint}") from None
    return name, params


def format_value(value: Any, *, nested: bool = False) -> str:
    """Write a parameter value so that ``parse_value`` reads it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(format_value(v, nested=True) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return repr(value)  # 'inf' and '-inf' included, which parse_value reads back
    if isinstance(value, str) and nested:
        return repr(value)  # a bare word is a value only on its own, not inside a tuple
    if isinstance(value, str):
        try:
            bare = parse_value(value) == value and value.strip() == value
        except ValueError:
            bare = False
        return value if bare else repr(value)
    return str(value)


def format_spec(name: str, params: dict[str, Any] | None = None) -> str:
    """``name[key=value,...]`` with keys sorted; just ``name`` when there are no parameters."""
    if not params:
        return name
    body = ",".join(f"{key}={format_value(params[key])}" for key in sorted(params))
    return f"{name}[{body}]"
