"""Bounded integer parsing: every input ends in a value within the bounds or None."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from downlink.integers import INT64_MAX, parse_int, parse_whole

CASES = [
    ("9" * 5000, 0, 4, None),  # past int()'s 4,300-digit limit: no ValueError
    ("-" + "9" * 5000, -10, 10, None),
    ("0" * 5000 + "1", 0, 4, 1),  # leading zeros, as int() reads them
    ("0003", 0, 4, 3),
    ("-5", -10, 10, -5),
    ("+3", 0, 4, 3),
    ("-0", 0, 4, 0),
    ("\u00b2", 0, 9, None),  # str.isdigit() says yes, int() says no
    ("\u0663", 0, 9, None),  # Arabic-Indic three: int() takes it, a record field must not
    (" 1", 0, 9, None),
    ("1_0", 0, 100, None),
    ("", 0, 4, None),
    ("0", 1, 4, None),
    (str(INT64_MAX), 0, INT64_MAX, INT64_MAX),
    (str(INT64_MAX + 1), 0, INT64_MAX, None),
]


@pytest.mark.parametrize(("text", "lo", "hi", "expected"), CASES)
def test_cases(text: str, lo: int, hi: int, expected: int | None) -> None:
    assert parse_int(text, lo, hi) == expected


@given(st.integers(min_value=-(10**30), max_value=10**30),
       st.integers(min_value=-(10**20), max_value=10**20),
       st.integers(min_value=0, max_value=10**20))
def test_agrees_with_int_within_bounds(value: int, lo: int, width: int) -> None:
    hi = lo + width
    expected = value if lo <= value <= hi else None
    assert parse_int(str(value), lo, hi) == expected
    if lo >= 0 and value >= 0:
        assert parse_whole(str(value), hi) == (value if value <= hi else None)
