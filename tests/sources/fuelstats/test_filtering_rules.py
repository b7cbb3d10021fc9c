"""Filtering rules as data (reference B8, test_config.py K1-K4, and F8's unsorted key)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from downlink.sources.fuelstats.filtering import (
    RulesError,
    RulesFile,
    index_rules,
    is_filtered,
)

LIST_FORM = [
    {"packages_list": [1, 5, 2]},
    {"packages_list": [6, 4, 3], "from_date": "2016-03-01"},
    {"packages_list": [], "from_date": None},
    {"build_id": "b1", "from_date": "2016-03-01T10"},
]


def test_list_form_is_indexed() -> None:
    """K1/K2: package lists become sorted tuples, mixed with build ids."""
    rules = index_rules({"8.0": LIST_FORM})
    assert rules["8.0"] == {
        ("1", "2", "5"): None,
        ("3", "4", "6"): dt.datetime(2016, 3, 1),
        (): None,
        "b1": dt.datetime(2016, 3, 1, 10),
    }


def test_indexing_is_idempotent() -> None:
    """K3: indexing indexed rules changes nothing."""
    once = index_rules({"8.0": LIST_FORM, "9.0": None})
    assert index_rules(once) == once


def test_package_order_does_not_matter() -> None:
    """K4: a package list is order-insensitive, on both sides."""
    rules = index_rules({"8.0": [{"packages_list": ["b", "a"]}]})
    structure = {"fuel_release": {"release": "8.0"}, "fuel_packages": ["a", "b"]}
    assert is_filtered(structure, rules) is False
    assert is_filtered({**structure, "fuel_packages": ["b", "a"]}, rules) is False


def test_unsorted_tuple_key_matches_nothing() -> None:
    """F8: an unsorted package tuple given directly in the dict form is not sorted."""
    rules = index_rules({"r": {("z", "a", "b"): None}})
    assert is_filtered({"fuel_release": {"release": "r"}, "fuel_packages": ["z", "a", "b"]},
                       rules) is True


@pytest.mark.parametrize(
    "raw",
    [[1], {"8.0": 5}, {"8.0": [{"nothing": 1}]}, {"8.0": {"b": "not a date"}},
     {"8.0": [{"packages_list": "x"}]}],
)
def test_unreadable_rules(raw: object) -> None:
    with pytest.raises(RulesError):
        index_rules(raw)


def test_rules_file_reloads_and_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('{"9.0": null}')
    rules = RulesFile(path)
    assert rules.current() == {"9.0": None}
    path.write_text('{"8.0": null, "9.0": null}')
    assert rules.current() == {"8.0": None, "9.0": None}
    path.write_text("{broken")
    assert rules.current() == {"8.0": None, "9.0": None}
