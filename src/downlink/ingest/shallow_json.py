"""JSON decoded one level deep, in time linear in its size whatever is nested inside.

A record is a flat object of strings and integers, and a bulk body an array of such
objects, but ``orjson.loads`` builds every nested value before anyone looks: 8 MB of
nested arrays are millions of Python lists, seconds with the interpreter lock held.
Here msgspec checks the whole document's syntax while skipping nested values without
building them (about 10 ns a byte; nesting deeper than Python's recursion limit is an
error), and only the top level is built: scalars exactly as orjson decodes them,
nested arrays and objects as empty ones of their type, which every caller refuses
where a value is wanted and ignores under keys it does not know.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")


class JSONError(ValueError):
    """The document is not valid JSON (the message says where)."""


def _first_byte(data: bytes | memoryview) -> bytes:
    match = _LEADING_SPACE.match(data)
    start = match.end() if match else 0
    return bytes(data[start : start + 1])


def _value(raw: msgspec.Raw) -> Any:
    # Raw is a view of the document: no copy here (nor below, for scalars).
    view = memoryview(raw)
    first = bytes(view[:1])
    if first == b"{":
        return {}
    if first == b"[":
        return []
    return orjson.loads(view)


def loads_shallow(data: bytes | memoryview | msgspec.Raw) -> Any:
    """Decode ``data``; values nested in the top level become empty ``[]`` or ``{}``."""
    if isinstance(data, msgspec.Raw):
        data = memoryview(data)
    first = _first_byte(data)
    try:
        if first == b"{":
            return {key: _value(raw) for key, raw in _OBJECT.decode(data).items()}
        if first == b"[":
            return [_value(raw) for raw in _ARRAY.decode(data)]
        return orjson.loads(data)
    except (msgspec.DecodeError, orjson.JSONDecodeError) as exc:
        raise JSONError(str(exc)) from None
    except RecursionError:
        raise JSONError("JSON is nested too deeply") from None


def array_items(data: bytes) -> list[msgspec.Raw] | None:
    """Return the undecoded items of a JSON array, or None when ``data`` is no array.

    The whole document's syntax is checked; each item is left for
    :func:`loads_shallow`. The items are views of ``data``, no copies and no objects
    the garbage collector would have to walk (a body of millions of tiny items costs
    about 0.1 us an item).
    """
    if _first_byte(data) != b"[":
        loads_shallow(data)  # a syntax error is reported as such
        return None
    try:
        return _ARRAY.decode(data)
    except msgspec.DecodeError as exc:
        raise JSONError(str(exc)) from None
    except RecursionError:
        raise JSONError("JSON is nested too deeply") from None
