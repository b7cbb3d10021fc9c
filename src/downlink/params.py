"""Parameter parsing shared by the JSON API and the pages: every refusal is a 400.

One place decides what a well-formed parameter is, so that no endpoint hands the
database a value it chokes on: integers are parsed with bounds
(:func:`downlink.integers.parse_int`: no 4,300-digit conversions, nothing past a
64-bit column), text refuses NUL and other control characters (PostgreSQL cannot
compare them), and ids in paths are 1 to 2^63 - 1 (:data:`RecordId`).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path

from downlink.errors import BadRequest
from downlink.integers import INT64_MAX, parse_int

MAX_ID = INT64_MAX
_CONTROL = re.compile("[\x00-\x1f]")

RecordId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="A stored id: a whole number from 1 to 2^63 - 1.")
]
"""A path id (records, crash groups). Anything else is a 400 naming the parameter; an
id in range that is not stored is the endpoint's 404."""


def integer(
    value: str | None, name: str, lo: int, hi: int, message: str | None = None
) -> int | None:
    """Return a whole-number parameter within ``[lo, hi]``; None when absent.

    Anything else (signs, spaces, other digits, too many digits, out of range) raises
    BadRequest with ``message``, by default one naming the parameter and its range.
    """
    if value is None:
        return None
    found = parse_int(value, lo, hi) if value[:1] not in ("+", "-") or lo < 0 else None
    if found is None:
        raise BadRequest(message or f"{name} must be a whole number from {lo} to {hi}")
    return found


def is_plain_text(value: str, max_len: int) -> bool:
    """True for at most ``max_len`` characters, none of them NUL or another C0 control."""
    return len(value) <= max_len and _CONTROL.search(value) is None


def text(value: str | None, name: str, max_len: int, message: str | None = None) -> str | None:
    """Return a text parameter as given; None when absent.

    BadRequest (``message``, by default naming the parameter) when it is longer than
    ``max_len`` or holds a control character: NUL cannot even be compared on PostgreSQL.
    """
    if value is None:
        return None
    if not is_plain_text(value, max_len):
        raise BadRequest(message or f"{name} must be at most {max_len} printable characters")
    return value


def parse_moment(value: str | None, name: str) -> float | None:
    """Parse epoch seconds or an ISO 8601 time (UTC when it has no offset).

    An absent or blank value is None; anything else unparseable, or a non-finite
    number, raises BadRequest naming the parameter.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{name} must be epoch seconds or an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number")
    return number
