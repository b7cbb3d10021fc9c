"""The one text rule: what both databases can store (downlink.store.storable)."""

from __future__ import annotations

import pytest

from downlink.store.storable import find_problem, text_problem, unstorable_field


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain ascii", None),
        ("café ÿ ✓ 𝄞", None),
        ("", None),
        ("a\x00b", "a NUL character"),
        ("\x00", "a NUL character"),
        ("caf\x00é", "a NUL character"),
        ("x\ud800y", "a lone surrogate code point"),
        ("\udfff", "a lone surrogate code point"),
    ],
)
def test_text_problem(value: str, problem: str | None) -> None:
    assert text_problem(value) == problem


def test_find_problem_walks_dicts_lists_and_keys() -> None:
    assert find_problem({"a": [1, "ok", {"b": "x\x00"}]}, "attrs") == (
        "attrs.a[2].b", "a NUL character"
    )
    assert find_problem({"bad\x00key": 1}, "attrs") == (
        "attrs key 'bad\\x00key'", "a NUL character"
    )
    assert find_problem({"a": [1, 2.5, None, True, "fine"]}, "attrs") is None


def test_unstorable_field_names_the_column_or_json_path() -> None:
    row = {"system_name": "debian", "severity": 1, "ts_capture": 1.5, "attrs": None}
    assert unstorable_field(row) is None
    assert unstorable_field({**row, "kernel_version": "6.1\x00"}) == (
        "kernel_version contains a NUL character, which cannot be stored"
    )
    assert unstorable_field({**row, "attrs": {"target": "x\x00"}}) == (
        "attrs.target contains a NUL character, which cannot be stored"
    )
    assert unstorable_field({**row, "_node": {"identity": {"name": "\ud800"}}}) == (
        "_node.identity.name contains a lone surrogate code point, which cannot be stored"
    )
