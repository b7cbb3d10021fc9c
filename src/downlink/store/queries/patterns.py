"""Filter values with wildcards: ``*`` or ``%`` match any run of characters.

Everything else in a value matches itself, ``_`` and ``\\`` included: the pattern is
escaped for ``LIKE ... ESCAPE '\\'``, the same on SQLite and PostgreSQL (whose default
escape character made a value ending in a backslash an error).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

_ESCAPE = "\\"
_WILDCARDS = frozenset("*%")
_SPECIAL = {"%": "%", "*": "%", "_": _ESCAPE + "_", _ESCAPE: _ESCAPE + _ESCAPE}


def is_pattern(value: str) -> bool:
    """True when ``value`` has a wildcard."""
    return not _WILDCARDS.isdisjoint(value)


def like_pattern(value: str) -> str:
    """Return the ``LIKE`` pattern (escape character ``\\``) that ``value`` stands for."""
    return "".join(_SPECIAL.get(ch, ch) for ch in value)


def matches(column: Any, value: str) -> ColumnElement[bool]:
    """``column = value``, or ``column LIKE pattern`` when ``value`` has a wildcard."""
    if is_pattern(value):
        return column.like(like_pattern(value), escape=_ESCAPE)  # type: ignore[no-any-return]
    return column == value  # type: ignore[no-any-return]
