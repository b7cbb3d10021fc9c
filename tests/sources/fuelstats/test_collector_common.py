"""Reference B8, test_ping.py / test_common.py, and the collector's common behaviour."""

from __future__ import annotations

import pytest

from tests.sources.fuelstats.client import checked, err, ok, post
from tests.sources.fuelstats.conftest import Served

RESOURCES = ("installation_structure", "action_logs", "oswl_stats")


@pytest.mark.parametrize("path", ["/api/v1/ping/", "/api/v1/ping"])
def test_ping(served: Served, path: str) -> None:
    """P1: GET ping answers ok with exec_time."""
    body = ok(served.client.get(path), "ping")
    assert body["exec_time"] >= 0


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH", "PUT"])
def test_ping_other_methods(served: Served, method: str) -> None:
    """P2: any other method on ping is 405 in the error envelope."""
    resp = served.client.request(method, "/api/v1/ping/")
    err(resp, 405)
    checked(resp, "ping")


@pytest.mark.parametrize(
    "path", ["/api/v1/json/xxx", "/api/v1/csv/xxx/yyy", "/api/v1/json/installation_info"]
)
def test_unknown_resource(served: Served, path: str) -> None:
    """C1: an unknown fuel-stats resource is 404 in the error envelope."""
    err(served.client.get(path), 404)


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "PUT"])
def test_not_allowed_methods(served: Served, resource: str, method: str) -> None:
    """I1, A1, O1: only POST is allowed on the collector's resources."""
    for path in (f"/api/v1/{resource}/", f"/api/v1/{resource}"):
        resp = served.client.request(method, path)
        err(resp, 405)
        checked(resp, resource)


@pytest.mark.parametrize("resource", RESOURCES)
def test_json_only(served: Served, resource: str) -> None:
    """A body that is not JSON, or not declared JSON, is 400 (nothing stored)."""
    path = f"/api/v1/{resource}/"
    as_json = {"content-type": "application/json"}
    err(served.client.post(path, content=b"{}", headers={"content-type": "text/plain"}), 400)
    bad = served.client.post(path, content=b"{not json", headers=as_json)
    assert "not JSON" in err(bad, 400)["message"]
    err(served.client.post(path, content=b"", headers=as_json), 400)


@pytest.mark.parametrize("resource", RESOURCES)
def test_empty_object_is_400(served: Served, resource: str) -> None:
    """``{}`` is refused with 400 on every resource (the original 500ed on action logs)."""
    body = err(post(served.client, resource, {}), 400)
    assert resource.split("_stats")[0] in body["message"]
    checked(post(served.client, resource, {}), resource)


def test_without_trailing_slash(served: Served, uid: str) -> None:
    """The slash-less paths serve the same resources (no redirect)."""
    body = {"installation_structure": {"master_node_uid": uid, "allocated_nodes_num": 0,
                                       "unallocated_nodes_num": 0, "clusters_num": 0,
                                       "clusters": []}}
    ok(served.client.post("/api/v1/installation_structure", json=body),
       "installation_structure", 201)
    ok(served.client.post("/api/v1/action_logs", json={"action_logs": []}), "action_logs")
    ok(served.client.post("/api/v1/oswl_stats", json={"oswl_stats": []}), "oswl_stats")
