"""The ``name[key=value,...]`` syntax shared by the CLI, suite files and run labels.

``adam[lr=1e-3,betas=(0.9,0.99)]`` names a registered entry and sets some of its parameters;
``format_spec`` writes the same syntax back with sorted keys (as benchopt prints its runs), so a
label can be pasted into the command line to rerun exactly that configuration.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["parse_spec", "format_spec", "format_value", "split_top_level", "parse_value"]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
_OPEN = {"[": "]", "(": ")", "{": "}"}


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split ``text`` on ``separator`` except inside brackets or parentheses.

    Raises:
        ValueError: on unbalanced brackets.
    """
    parts: list[str] = []
    depth: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is not None:  # inside a quoted string nothing is structure
            if char == quote:
                quote = None
            current.append(char)
            continue
        if char in ("'", '"'):
            quote = char
        elif char in _OPEN:
            depth.append(_OPEN[char])
        elif char in _OPEN.values():
            if not depth or depth.pop() != char:
                raise ValueError(f"unbalanced {char!r} in {text!r}")
        if char == separator and not depth:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if quote is not None:
        raise ValueError(f"unclosed quote {quote} in {text!r}")
    if depth:
        raise ValueError(f"unclosed bracket in {text!r}: {depth[-1]!r} is missing")
    parts.append("".join(current).strip())
    return parts


def parse_value(text: str) -> Any:
    """Parse one parameter value: a Python literal, ``true``/``false``, or a bare word (a string).

    ``1e-3`` -> 0.001, ``(0.9,0.99)`` -> (0.9, 0.99), ``batch`` -> "batch". A value that is neither
    a literal nor a bare word (``1e-3x``, ``(0.9``) raises ``ValueError``.
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if lowered in ("inf", "+inf", "-inf"):
        return float(lowered)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if _BARE_WORD.match(text):
            return text
        raise ValueError(f"malformed value {text!r}") from None
    if isinstance(value, list):
        value = tuple(value)
    return value


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``name[key=value,...]`` into the name and a dict of parameters.

    Raises:
        ValueError: naming the malformed part.
    """
    text = text.strip()
    if "[" in text:
        if not text.endswith("]"):
            raise ValueError(f"malformed spec {text!r}: expected name[key=value,...]")
        name, _, body = text[:-1].partition("[")
    else:
        name, body = text, ""
    name = name.strip()
    if not _NAME.match(name):
        raise ValueError(f"malformed name {name!r} in {text!r}")
    params: dict[str, Any] = {}
    if body.strip():
        for item in split_top_level(body):
            key, equals, raw = item.partition("=")
            key = key.strip()
            if not equals or not _NAME.match(key):
                raise ValueError(f"malformed parameter {item!r} in {text!r}: expected key=value")
            if key in params:
                raise ValueError(f"parameter {key!r} given twice in {text!r}")
            try:
                params[key] = parse_value(raw)
            except ValueError as error:
                raise ValueError(f"{error} for {key!r} in {text!r}") from None
    return name, params


def format_value(value: Any) -> str:
    """Write a parameter value so that ``parse_value`` reads it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return repr(value)  # 'inf' and '-inf' included, which parse_value reads back
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
