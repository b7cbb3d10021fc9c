"""Reference B8, test_installation_structure.py: HTTP cases I1-I8, filter rules F1-F9."""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sources.fuelstats.client import err, info, minimal, ok, post, write_rules
from tests.sources.fuelstats.conftest import Served

R = "installation_structure"


@pytest.fixture
def rules(served: Served) -> Iterator[Callable[[Any], None]]:
    """Set the server's filtering rules; back to none afterwards."""
    yield lambda value: write_rules(served.rules, value)
    write_rules(served.rules, None)


def _with_uid(body: dict[str, Any], uid: str) -> dict[str, Any]:
    found = copy.deepcopy(body)
    found["installation_structure"]["master_node_uid"] = uid
    return found


@pytest.mark.parametrize(
    "body",
    [
        "installation_structure_invalid_missing_required",
        None,
        {},
        {"installation_structure": {"master_node_uid": "x"}},
        [],
        {"installation_structure": {**minimal("x")["installation_structure"], "clusters": [{}]}},
    ],
)
def test_validation_error(served: Served, examples: Callable[[str], Any], body: Any) -> None:
    """I2: missing required fields, ``null`` and ``{}`` are 400 with a message."""
    if isinstance(body, str):
        body = examples(body)
    err(post(served.client, R, body), 400)


def test_post(served: Served, examples: Callable[[str], Any], uid: str) -> None:
    """I3: a new master node is 201; the structure is stored exactly as posted."""
    body = _with_uid(examples("installation_structure_valid_two_clusters"), uid)
    before = time.time()
    ok(post(served.client, R, body), R, 201)
    stored = info(served.client, uid)
    assert stored["structure"] == body["installation_structure"]
    created = dt.datetime.fromisoformat(stored["creation_date"]).timestamp()
    assert before - 1 <= created <= time.time() + 1
    assert stored["modification_date"] is None
    assert stored["release"] == "r"
    assert stored["is_filtered"] is False


def test_post_update(served: Served, uid: str) -> None:
    """I4: a known master node is 200; the newest structure wins, creation date kept."""
    ok(post(served.client, R, minimal(uid)), R, 201)
    first = info(served.client, uid)
    update = minimal(uid, unallocated_nodes_num=5)
    ok(post(served.client, R, update), R, 200)
    stored = info(served.client, uid)
    assert stored["structure"] == update["installation_structure"]
    assert stored["creation_date"] == first["creation_date"]
    assert stored["modification_date"] is not None
    assert stored["modification_date"] >= stored["creation_date"]


def _release(**fields: Any) -> dict[str, Any]:
    return {"release": "r", "feature_groups": ["experimental"], "api": "v1", **fields}


@pytest.mark.parametrize(
    "fuel_release, packages",
    [
        (_release(ostf_sha="o", astute_sha="a", nailgun_sha="n", fuellib_sha="f"), None),
        (_release(**{"fuel-ostf_sha": "f", "python-fuelclient_sha": "p", "fuelmain_sha": "m",
                     "fuel-library_sha": "l", "astute_sha": "a", "nailgun_sha": "n"}), None),
        (_release(**{"fuel-nailgun_sha": "n", "fuel-library_sha": "l"}), None),
        (_release(), ["nailgun-8.0.0-1234"]),
    ],
)
def test_valid_fuel_release_content(
    served: Served, uid: str, fuel_release: dict[str, Any], packages: list[str] | None
) -> None:
    """I5: the fuel_release shapes of 6.x, 7.0 and 8.0 are accepted."""
    extra: dict[str, Any] = {"fuel_release": fuel_release}
    if packages is not None:
        extra["fuel_packages"] = packages
    ok(post(served.client, R, minimal(uid, **extra)), R, 201)
    ok(post(served.client, R, minimal(uid, **extra)), R, 200)


@pytest.mark.parametrize(
    "name", ["installation_structure_valid_fuel7_renamed_shas",
             "installation_structure_valid_fuel8_packages"]
)
def test_fixture_bodies(
    served: Served, examples: Callable[[str], Any], uid: str, name: str
) -> None:
    """The shared valid bodies are stored as posted."""
    body = _with_uid(examples(name), uid)
    ok(post(served.client, R, body), R, 201)
    assert info(served.client, uid)["structure"] == body["installation_structure"]


def test_release_column(served: Served, uid: str) -> None:
    """I6: the release is taken from fuel_release and reported under it."""
    release = "release-" + uid
    body = minimal(uid, fuel_release={"release": release, "feature_groups": [], "api": "v1"})
    ok(post(served.client, R, body), R, 201)
    assert info(served.client, uid)["release"] == release
    report = served.client.get("/api/v1/json/report/installations", params={"release": release})
    assert report.json()["installations"]["count"] == 1


def _filtered_uids(served: Served) -> set[str]:
    page = served.client.get("/api/v1/json/installation_infos/filtered").json()
    return {obj["master_node_uid"] for obj in page["objs"]}


def test_not_filtered_saved_in_db(served: Served, uid: str) -> None:
    """I7: with no rules an installation is not filtered."""
    body = minimal(uid, **{"fuel-release": {"release": "x"}})
    ok(post(served.client, R, body), R, 201)
    assert info(served.client, uid)["is_filtered"] is False
    assert uid not in _filtered_uids(served)


def test_filtered_saved_in_db(
    served: Served, uid: str, rules: Callable[[Any], None]
) -> None:
    """I8: a release missing from the rules (here: no release at all) is filtered."""
    rules({"xx": None})
    ok(post(served.client, R, minimal(uid, **{"fuel-release": {"release": "x"}})), R, 201)
    assert info(served.client, uid)["is_filtered"] is True
    assert uid in _filtered_uids(served)


YESTERDAY = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
TOMORROW = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
IN_2_DAYS = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%d")
PKGS = ["z_filtered", "a_filtered"]


def _structure(uid: str, release: str, build: str | None, packages: list[str] | None) -> Any:
    fuel_release: dict[str, Any] = {"release": release, "feature_groups": [], "api": "v1"}
    if build is not None:
        fuel_release["build_id"] = build
    extra: dict[str, Any] = {"fuel_release": fuel_release}
    if packages is not None:
        extra["fuel_packages"] = packages
    return minimal(uid, **extra)


FILTER_CASES = [
    # F1: by build id, not filtered
    ("F1", "6.1", "B", None, None, False),
    ("F1", "6.1", "B", None, {}, False),
    ("F1", "6.1", "B", None, {"6.1": None}, False),
    ("F1", "6.1", "B", None, {"6.1": {"B": None}}, False),
    ("F1", "6.1", "B", None, {"6.1": {"B": YESTERDAY}}, False),
    # F2: by packages, not filtered
    ("F2", "8.0", None, PKGS, {"8.0": [{"packages_list": PKGS}]}, False),
    ("F2", "8.0", None, PKGS, {"8.0": [{"packages_list": PKGS, "from_date": YESTERDAY}]}, False),
    # F3: both, not filtered
    ("F3", "8.0", "B", PKGS, None, False),
    ("F3", "8.0", "B", PKGS, {}, False),
    ("F3", "8.0", "B", PKGS, {"8.0": None}, False),
    ("F3", "8.0", "B", PKGS, {"8.0": [{"packages_list": PKGS}, {"build_id": "B"}]}, False),
    ("F3", "8.0", "B", PKGS, {"8.0": [{"packages_list": PKGS, "from_date": YESTERDAY},
                                      {"build_id": "B", "from_date": YESTERDAY}]}, False),
    # F4: filtered in every case
    ("F4", "8.0_filtered", "B", PKGS, {"xx": None}, True),
    ("F4", "8.0_filtered", "B", PKGS, {"8.0_filtered": {}}, True),
    ("F4", "8.0_filtered", "B", PKGS, {"8.0_filtered": [
        {"packages_list": PKGS, "from_date": TOMORROW}, {"build_id": "B"}]}, True),
    ("F4", "8.0_filtered", "B", PKGS, {"8.0_filtered": [
        {"packages_list": PKGS}, {"build_id": "B", "from_date": TOMORROW}]}, True),
    ("F4", "8.0_filtered", "B", PKGS, {"8.0_filtered": [
        {"packages_list": PKGS, "from_date": TOMORROW},
        {"build_id": "B", "from_date": TOMORROW}]}, True),
    # F6 / F7: by build id
    ("F6", "r", "build_01", None, {"r": {}}, True),
    ("F6", "r", "build_01", None, {"r": {"build_01": IN_2_DAYS}}, True),
    ("F7", "r", None, None, {"r": {}}, False),
    ("F7", "r", "build_02", None, {"r": {"build_02": YESTERDAY}}, False),
    # F8 / F9: by packages
    ("F8", "r", None, ["z", "a", "b"], {"r": {}}, True),
    ("F8", "r", None, ["z", "a", "b"], {"r": [{"packages_list": ["a", "z"]}]}, True),
    ("F8", "r", None, ["z", "a", "b"], {"r": [{"packages_list": ["z", "a", "b"],
                                              "from_date": TOMORROW}]}, True),
    ("F9", "r", None, None, {"r": {}}, False),
    ("F9", "r", None, ["z", "a", "b"], {"r": [{"packages_list": ["a", "b", "z"],
                                              "from_date": YESTERDAY}]}, False),
    ("F9", "r", None, ["z", "a", "b"], {"r": [{"packages_list": ["b", "z", "a"]}]}, False),
]


@pytest.mark.parametrize("case, release, build, packages, rule_set, filtered", FILTER_CASES)
def test_filtering_rules(
    served: Served, uid: str, rules: Callable[[Any], None], case: str, release: str,
    build: str | None, packages: list[str] | None, rule_set: Any, filtered: bool
) -> None:
    """F1-F4, F6-F9: the filter decision of each rule set, seen through the JSON API."""
    rules(rule_set)
    ok(post(served.client, R, _structure(uid, release, build, packages)), R, 201)
    assert info(served.client, uid)["is_filtered"] is filtered, case


@pytest.mark.parametrize(
    "from_dt",
    ["2015-05-19T11:55:06.369745", "2015-05-19T11:55:06", "2015-05-19T11:55",
     "2015-05-19T11", "2015-05-19T", "2015-05-19"],
)
def test_from_date_formats(
    served: Served, uid: str, rules: Callable[[Any], None], from_dt: str
) -> None:
    """F5: every tested from-date form is understood (a past date: not filtered)."""
    rules({"6.1": {"B": from_dt}})
    ok(post(served.client, R, _structure(uid, "6.1", "B", None)), R, 201)
    assert info(served.client, uid)["is_filtered"] is False


def test_sanitized_before_storage(served: Served, uid: str) -> None:
    """Secrets in attributes are replaced; contacts without the opt-in are dropped."""
    cluster = {
        "id": 1, "mode": "ha", "nodes_num": 0, "nodes": [], "status": "new",
        "release": {"version": "v", "os": "Ubuntu", "name": "n"},
        "attributes": {"libvirt_type": "kvm", "admin_password": "hunter2",
                       "keystone": {"admin_token": "t0k", "enabled": True}},
    }
    body = minimal(uid, clusters_num=1, clusters=[cluster], user_information={
        "contact_info_provided": False, "email": "a@b.c", "name": "N", "company": "C"})
    ok(post(served.client, R, body), R, 201)
    stored = info(served.client, uid)["structure"]
    attrs = stored["clusters"][0]["attributes"]
    assert attrs["admin_password"] == "<sanitized>"
    assert attrs["keystone"] == {"admin_token": "<sanitized>", "enabled": True}
    assert attrs["libvirt_type"] == "kvm"
    assert stored["user_information"] == {"contact_info_provided": False}
    opted = minimal(uid, user_information={"contact_info_provided": True, "email": "a@b.c"})
    ok(post(served.client, R, opted), R, 200)
    assert info(served.client, uid)["structure"]["user_information"]["email"] == "a@b.c"
