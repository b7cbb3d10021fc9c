"""The one rule for text every source must follow: what both databases can store.

SQLite stores any Python string that encodes as UTF-8, NUL characters included.
PostgreSQL's ``text`` cannot hold U+0000 at all (``COPY`` and ``INSERT`` fail with a
``DataError``), and its ``json``/``jsonb`` values refuse the ``\\u0000`` escape in their
functions and on input. Neither can store a lone surrogate (U+D800..U+DFFF), which is
not encodable. So a value is storable when it contains none of these, and every source
refuses a record carrying one with a message naming the field (HTTP 400, a skipped
websocket message, a CLI error), identically on both databases.

:func:`unstorable_field` checks a whole row as the store receives it (columns, the
JSON ``attrs``, and any nested detail a processor reads), so a source that forgets the
rule still gets a clean refusal from :meth:`Store.write` rather than a record that one
database keeps and the other rejects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Return what makes ``value`` unstorable ("a NUL character", …) or None."""
    if value.isascii():
        return "a NUL character" if "\x00" in value else None
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone surrogate code point"


def find_problem(value: Any, path: str) -> tuple[str, str] | None:
    """Return ``(path, problem)`` for the first unstorable string in ``value``, or None.

    ``value`` may be a string or JSON-like nesting of dicts and lists; keys count too.
    Paths read like ``attrs.target`` or ``attrs.list[2]``.
    """
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (path, problem)
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key!r}]"
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                return f"{path} key {key!r}", problem
            found = find_problem(item, where)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_problem(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


_SCALARS = (int, float, bool, type(None))


def unstorable_field(row: Mapping[str, Any]) -> str | None:
    """Return a message naming the first field of ``row`` that breaks the rule, or None.

    Runs for every record ``Store.write`` takes (about 3 us for a Clear Linux row).
    """
    for key, value in row.items():
        if value.__class__ is str:
            if "\x00" in value or (not value.isascii() and _UNSTORABLE.search(value)):
                return f"{key} contains {text_problem(value)}, which cannot be stored"
        elif value.__class__ not in _SCALARS:
            found = find_problem(value, key)
            if found is not None:
                return f"{found[0]} contains {found[1]}, which cannot be stored"
    return None
