"""Reference B8, test_json_reports.py: the JSON report, summary and export endpoints.

Each test starts its own server (the counts are over every installation). The
original inserted rows straight into the database; here installations are posted,
and filtering rules make ``x2`` (and ``x4``) filtered: their build is not accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from downlink.testing.live import LiveServer
from tests.sources.fuelstats.client import err, minimal, ok, post

RULES = {"9.0": None, "8.0": {"good": None}}


def cluster(cid: int, status: str, nodes: int = 0, hypervisor: str = "kvm",
            os_name: str = "Ubuntu") -> dict[str, Any]:
    """A valid cluster of the structure schema."""
    return {
        "id": cid, "mode": "ha_compact", "status": status, "nodes_num": nodes, "nodes": [],
        "release": {"version": "v", "os": os_name, "name": "n"},
        "attributes": {"libvirt_type": hypervisor},
    }


def installation(uid: str, release: str, clusters: list[dict[str, Any]], *,
                 filtered: bool = False, clusters_num: int | None = None) -> dict[str, Any]:
    """A structure of ``release``; ``filtered`` gives it a build the rules refuse."""
    fuel_release = {"release": release, "feature_groups": [], "api": "v1",
                    "build_id": "qa" if filtered else "good"}
    return minimal(uid, fuel_release=fuel_release, clusters=clusters,
                   clusters_num=len(clusters) if clusters_num is None else clusters_num)


@pytest.fixture
def server(fuel_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    """A fresh server whose rules accept 9.0 and build "good" of 8.0."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    return fuel_server({"DOWNLINK_FUEL_FILTERING_RULES": str(rules)})


def load(server: LiveServer, structures: list[dict[str, Any]]) -> httpx.Client:
    """Post the structures; return a client of the server."""
    client = httpx.Client(base_url=server.url, timeout=30)
    for body in structures:
        ok(post(client, "installation_structure", body), "installation_structure", 201)
    return client


def report(client: httpx.Client, release: str | None = None, **params: str) -> dict[str, Any]:
    """GET report/installations."""
    if release is not None:
        params["release"] = release
    resp = client.get("/api/v1/json/report/installations", params=params)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def test_installations_count(server: LiveServer) -> None:
    """Only not-filtered installations count, per release."""
    client = load(server, [installation("x0", "9.0", []), installation("x1", "8.0", []),
                           installation("x2", "8.0", [], filtered=True)])
    assert report(client)["installations"]["count"] == 2
    assert report(client, "8.0")["installations"]["count"] == 1
    assert report(client, "xxx")["installations"]["count"] == 0


def test_statuses(server: LiveServer) -> None:
    """Environment statuses of not-filtered installations."""
    client = load(server, [
        installation("x0", "9.0", [cluster(1, "new"), cluster(2, "operational"),
                                   cluster(3, "error")]),
        installation("x1", "8.0", [cluster(1, "deployment"), cluster(2, "operational"),
                                   cluster(3, "operational")]),
        installation("x2", "8.0", [cluster(1, "deployment"), cluster(2, "operational")],
                     filtered=True),
    ])
    assert report(client)["environments"]["statuses"] == {
        "new": 1, "deployment": 1, "error": 1, "operational": 3}
    assert report(client, "8.0")["environments"]["statuses"] == {
        "deployment": 1, "operational": 2}
    assert report(client, "xxx")["environments"]["statuses"] == {}


def test_environments_count(server: LiveServer) -> None:
    """Environment counts and the distribution of installations by environments."""
    client = load(server, [
        installation("x0", "9.0", [cluster(i, "new") for i in range(3)]),
        installation("x1", "8.0", [cluster(i, "new") for i in range(2)]),
        installation("x2", "8.0", []),
        installation("x3", "8.0", []),
        installation("x4", "8.0", [cluster(i, "new") for i in range(3)], filtered=True),
    ])
    everything = report(client)
    assert everything["environments"]["count"] == 5
    assert everything["installations"]["environments_num"] == {"0": 2, "2": 1, "3": 1}
    of_8 = report(client, "8.0")
    assert of_8["environments"]["count"] == 2
    assert of_8["installations"]["environments_num"] == {"0": 2, "2": 1}


def test_nodes_num(server: LiveServer) -> None:
    """Only operable environments (operational, error) count towards node counts."""
    client = load(server, [
        installation("x0", "9.0", [cluster(1, "operational", 3), cluster(2, "new", 2),
                                   cluster(3, "error", 1)]),
        installation("x1", "8.0", [cluster(1, "operational", 3)]),
        installation("x2", "8.0", [cluster(1, "operational", 5)], filtered=True),
    ])
    assert report(client)["environments"]["operable_envs_count"] == 3
    assert report(client)["environments"]["nodes_num"] == {"3": 2, "1": 1}
    assert report(client, "9.0")["environments"]["operable_envs_count"] == 2
    assert report(client, "9.0")["environments"]["nodes_num"] == {"3": 1, "1": 1}


def test_hypervisors_and_oses(server: LiveServer) -> None:
    """Hypervisors and OSes of operable environments, lower-cased."""
    client = load(server, [
        installation("x0", "9.0", [
            cluster(1, "operational", hypervisor="KVM", os_name="Ubuntu"),
            cluster(2, "error", hypervisor="qemu", os_name="CentOS"),
            cluster(3, "operational", hypervisor="Qemu", os_name="ubuntu"),
            cluster(4, "new", hypervisor="kvm", os_name="ubuntu"),
            cluster(5, "operational", hypervisor="kvm", os_name="UBUNTU"),
        ]),
        installation("x1", "8.0", [cluster(1, "operational", hypervisor="kvm"),
                                   cluster(2, "error", hypervisor="VCenter", os_name="CentOS")]),
        installation("x2", "8.0", [cluster(1, "operational")], filtered=True),
    ])
    everything = report(client)["environments"]
    assert everything["hypervisors_num"] == {"kvm": 3, "vcenter": 1, "qemu": 2}
    assert everything["oses_num"] == {"ubuntu": 4, "centos": 2}
    of_8 = report(client, "8.0")["environments"]
    assert of_8["hypervisors_num"] == {"kvm": 1, "vcenter": 1}
    assert of_8["oses_num"] == {"ubuntu": 1, "centos": 1}


def test_report_cache(fuel_server: Callable[..., LiveServer]) -> None:
    """Answers are cached for every release at once; ``refresh=1`` recomputes."""
    server = fuel_server()
    client = load(server, [installation("x0", "9.0", []), installation("x1", "8.0", [])])
    assert report(client)["installations"]["count"] == 2
    # A row the collector did not write (so the cache was not emptied):
    engine = create_engine(server.database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO fuel_installation_structures (master_node_uid, structure, "
            "creation_date, release, is_filtered, clusters_num) "
            "VALUES ('x9', '{}', 0, '8.0', false, 0)"
        ))
        # ... with its count, as the collector's sink keeps it (counts.py):
        conn.execute(text(
            "INSERT INTO fuel_counts (report, release, day, key, n, total) "
            "VALUES ('installations', '8.0', 0, 'null', 1, 0)"
        ))
    engine.dispose()
    assert report(client)["installations"]["count"] == 2
    assert report(client, "8.0")["installations"]["count"] == 1  # filled by the first call
    assert report(client, refresh="1")["installations"]["count"] == 3
    assert report(client, "8.0")["installations"]["count"] == 2


def test_json_export(server: LiveServer) -> None:
    """installation_info 404, summary totals, the filtered list, paging fallbacks."""
    client = load(server, [installation("x0", "9.0", []), installation("x1", "8.0", []),
                           installation("x2", "8.0", [], filtered=True)])
    err(client.get("/api/v1/json/installation_info/xxxx"), 404)
    ok(post(client, "action_logs", {"action_logs": []}), "action_logs")
    assert client.get("/api/v1/json/summary").json() == {
        "installation_structures": {"total": 3, "filtered": 1, "not_filtered": 2},
        "action_logs": {"total": 0},
        "oswl_stats": {"total": 0},
    }
    page = client.get("/api/v1/json/installation_infos/filtered").json()
    assert page["paging_params"] == {"limit": 1000, "offset": 0, "total": 1}
    assert [o["master_node_uid"] for o in page["objs"]] == ["x2"]
    assert all(o["is_filtered"] for o in page["objs"])
    for fallback in ("[1, 2]", "7", "not json", '"x"'):
        page = client.get("/api/v1/json/installation_infos/filtered",
                          params={"paging_params": fallback}).json()
        assert page["paging_params"] == {"limit": 1000, "offset": 0, "total": 1}
    page = client.get("/api/v1/json/installation_infos/filtered",
                      params={"paging_params": '{"limit": 1, "offset": 1}'}).json()
    assert page["paging_params"] == {"limit": 1, "offset": 1, "total": 1}
    assert page["objs"] == []
    err(client.get("/api/v1/json/installation_infos/filtered",
                   params={"paging_params": '{"limit": -1}'}), 400)
    err(client.post("/api/v1/json/summary"), 405)
