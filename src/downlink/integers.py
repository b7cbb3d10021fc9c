"""Bounded parsing of decimal integers from untrusted text, for every layer.

``int(text)`` on client input is a trap twice over: Python refuses strings of more than
4,300 digits with a ``ValueError`` that is not a parse error (a 500, unless every caller
knows), its cost grows with the square of the length, and ``str.isdigit`` lets through
digits ``int`` rejects (``"²"``). :func:`parse_int` looks at the text's shape first and
converts only as many digits as the bounds can have, so any input costs O(length) and
ends in a value within the bounds or None.
"""

from __future__ import annotations

import re

_INTEGER = re.compile(r"([+-]?)([0-9]+)", re.ASCII)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def parse_whole(text: str, hi: int) -> int | None:
    """Return ``text`` if it is ASCII digits only (no sign) worth at most ``hi``, else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    if len(text) > _digits(hi):
        text = text.lstrip("0") or "0"
        if len(text) > _digits(hi):
            return None
    value = int(text)
    return value if value <= hi else None


def parse_int(text: str, lo: int, hi: int) -> int | None:
    """Return ``text`` as an integer if it is one within ``[lo, hi]``, else None.

    ``text`` is ASCII digits with an optional sign; nothing else (no spaces, no
    underscores, no other scripts' digits). Leading zeros are allowed.
    """
    if lo >= 0 and text[:1] not in ("+", "-"):
        value = parse_whole(text, hi)
        return value if value is not None and value >= lo else None
    found = _INTEGER.fullmatch(text)
    if found is None:
        return None
    sign, digits = found.groups()
    digits = digits.lstrip("0") or "0"
    if len(digits) > _digits(max(abs(lo), abs(hi))):
        return None
    value = -int(digits) if sign == "-" else int(digits)
    return value if lo <= value <= hi else None


def _digits(bound: int) -> int:
    return len(str(bound))
