"""Reference B8, test_oswl_stats.py: O2-O12 as black-box HTTP cases (O1: common tests)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.sources.fuelstats.client import err, ok, oswl, post, statuses
from tests.sources.fuelstats.conftest import Served

R = "oswl_stats"
TYPES = ["vm", "tenant", "volume", "security_group", "keystone_user", "flavor",
         "cluster_stats", "image"]


def stored(client: httpx.Client, uid: str, resource_type: str | None = None) -> dict[str, Any]:
    """The OSWL snapshots stored for ``uid`` (JSON API, one page)."""
    path = f"/api/v1/json/oswls/{uid}" + (f"/{resource_type}" if resource_type else "")
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


@pytest.mark.parametrize(
    "body",
    [
        "oswl_stats_invalid_cluster_id_null",
        "oswl_stats_invalid_id_null",
        {"oswl_stats": [{**oswl("x", 1), "created_date": "yesterday"}]},
        {"oswl_stats": [{**oswl("x", 1), "updated_time": "noon"}]},
        {"oswl_stats": [{**oswl("x", 1), "unknown": 1}]},
        {"oswl_stats": [{k: v for k, v in oswl("x", 1).items() if k != "resource_type"}]},
    ],
)
def test_validation_error(served: Served, examples: Callable[[str], Any], body: Any) -> None:
    """O2: invalid items are 400 (bad dates and a missing resource type too)."""
    if isinstance(body, str):
        body = examples(body)
    err(post(served.client, R, body), 400)


def test_validation(served: Served, uid: str) -> None:
    """O3: ids 2, 3, 3 in one request: deduplicated (the original failed all three)."""
    items = [
        oswl(uid, 2, cluster_id=1),
        oswl(uid, 3, cluster_id=1, data={"added": [{"id": 1, "time": 343434343}],
                                         "current": [{"id": "xxx", "status": "down"}],
                                         "removed": [], "modified": []}),
        oswl(uid, 3, cluster_id=1, checksum="last",
             version_info={"fuel_version": "7.0", "openstack_version": None}),
    ]
    answer = ok(post(served.client, R, {"oswl_stats": items}), R)
    assert [(i["id"], i["status"]) for i in answer["oswl_stats"]] == [(2, "added"), (3, "added")]
    objs = {o["external_id"]: o for o in stored(served.client, uid)["objs"]}
    assert objs[3]["resource_checksum"] == "last"  # the last duplicate won
    assert objs[3]["version_info"] == {"fuel_version": "7.0", "openstack_version": None}


def test_fixture_body(served: Served, examples: Callable[[str], Any], uid: str) -> None:
    """The shared valid body: both items added, then updated on a second post."""
    body = copy.deepcopy(examples("oswl_stats_valid"))
    for item in body["oswl_stats"]:
        item["master_node_uid"] = uid
    assert statuses(ok(post(served.client, R, body), R), R) == {"added": 2}
    assert statuses(ok(post(served.client, R, body), R), R) == {"updated": 2}


def test_empty_oswl_post(served: Served) -> None:
    """O4: an empty list is ok."""
    assert ok(post(served.client, R, {"oswl_stats": []}), R)["oswl_stats"] == []


def test_post(served: Served, uid: str) -> None:
    """O5: 20 snapshots are added and stored."""
    items = [oswl(uid, i, resource_type=random.choice(TYPES)) for i in range(20)]
    answer = ok(post(served.client, R, {"oswl_stats": items}), R)
    assert statuses(answer, R) == {"added": 20}
    assert stored(served.client, uid)["paging_params"]["total"] == 20


def test_post_duplication(served: Served, uid: str) -> None:
    """O6: posting the same 30 again updates them; still 30 rows."""
    items = [oswl(uid, i, resource_type=TYPES[i % len(TYPES)]) for i in range(30)]
    assert statuses(ok(post(served.client, R, {"oswl_stats": items}), R), R) == {"added": 30}
    assert statuses(ok(post(served.client, R, {"oswl_stats": items}), R), R) == {"updated": 30}
    assert stored(served.client, uid)["paging_params"]["total"] == 30


def test_post_updating_objects_ids(served: Served, uid: str) -> None:
    """O7: an external id equal to a stored row's primary key is not confused with it."""
    first = oswl(uid, 1, resource_type="flavor")
    ok(post(served.client, R, {"oswl_stats": [first]}), R)
    pk = stored(served.client, uid)["objs"][0]["id"]
    answer = ok(post(served.client, R, {"oswl_stats": [first, {**first, "id": pk}]}), R)
    assert "failed" not in statuses(answer, R)
    expected = 1 if pk == 1 else 2
    assert stored(served.client, uid)["paging_params"]["total"] == expected


def test_post_with_version_info(served: Served, uid: str) -> None:
    """O8: every version_info shape is stored."""
    shapes: list[dict[str, Any]] = [
        {}, {"fuel_version": None}, {"fuel_version": "7.0"}, {"release_version": "liberty-8.0"},
        {"release_os": None}, {"release_name": "Liberty on Ubuntu"},
        {"fuel_version": "8.0", "release_version": "liberty-8.0", "release_os": "Ubuntu",
         "release_name": "Liberty", "environment_version": "8.0"},
    ]
    items = [oswl(uid, i, version_info=shapes[i % len(shapes)]) for i in range(30)]
    answer = ok(post(served.client, R, {"oswl_stats": items}), R)
    assert len(answer["oswl_stats"]) == 30
    objs = stored(served.client, uid)["objs"]
    assert len(objs) == 30
    assert {o["external_id"]: o["version_info"] for o in objs} == {
        i: shapes[i % len(shapes)] for i in range(30)}


def test_split_new_and_updated(served: Served, uid: str) -> None:
    """O9-O12: 3 stored, then 10 posted with one checksum changed: 3 updated + 7 added."""
    items = [oswl(uid, i, checksum=f"c{i}") for i in range(10)]
    ok(post(served.client, R, {"oswl_stats": items[:3]}), R)
    changed = [*items]
    changed[1] = {**items[1], "resource_checksum": "new"}
    answer = ok(post(served.client, R, {"oswl_stats": changed}), R)
    assert {i["id"]: i["status"] for i in answer["oswl_stats"]} == {
        **{i: "updated" for i in range(3)}, **{i: "added" for i in range(3, 10)}}
    objs = {o["external_id"]: o for o in stored(served.client, uid)["objs"]}
    assert objs[1]["resource_checksum"] == "new"


def test_same_id_other_type_is_another_row(served: Served, uid: str) -> None:
    """Rows are keyed by (node, id, resource type): another type does not overwrite."""
    ok(post(served.client, R, {"oswl_stats": [oswl(uid, 7, resource_type="vm")]}), R)
    answer = ok(post(served.client, R, {"oswl_stats": [oswl(uid, 7, resource_type="image")]}), R)
    assert statuses(answer, R) == {"added": 1}
    assert stored(served.client, uid, "vm")["paging_params"]["total"] == 1
    assert stored(served.client, uid, "image")["paging_params"]["total"] == 1
