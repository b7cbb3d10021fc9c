"""Parsing the query parameters of the OONI measurements and aggregation APIs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ASN = re.compile(r"^(AS)?([0-9]{1,10})$", re.IGNORECASE)


class ParamError(ValueError):
    """A query parameter with an unusable value; the message names it."""


def comma_list(value: str | None) -> list[str]:
    """``a,b`` as ``["a", "b"]`` (blanks dropped); None or "" as []."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def asns(value: str | None, name: str = "probe_asn") -> list[int]:
    """``AS123,456`` as ``[123, 456]``."""
    out = []
    for item in comma_list(value):
        match = _ASN.match(item)
        if match is None:
            raise ParamError(f"{name}: {item!r} is not an ASN (AS123 or 123)")
        out.append(int(match.group(2)))
    return out


def moment(value: str | None, name: str) -> datetime | None:
    """A date (``2024-01-31``) or ISO datetime (``2024-01-31T10:00:00Z``), in UTC."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ParamError(f"{name}: {value!r} is not a date or ISO datetime") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def boolean(value: str | None, name: str) -> bool | None:
    """``true``/``false`` (any case), or None when absent."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ParamError(f"{name}: expected true or false, not {value!r}")


def integer(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer in ``[low, high]``."""
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ParamError(f"{name}: {value!r} is not an integer") from None
    if not low <= n <= high:
        raise ParamError(f"{name}: must be between {low} and {high}")
    return n


def min_len(value: str | None, name: str, n: int = 3) -> str | None:
    """A string of at least ``n`` characters, or None."""
    if value is None:
        return None
    if len(value) < n:
        raise ParamError(f"{name}: must be at least {n} characters")
    return value
