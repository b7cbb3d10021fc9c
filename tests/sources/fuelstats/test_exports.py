"""The CSV exports: clusters, nodes, plugins, an OSWL daily series, the zip of all."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from downlink.testing.live import LiveServer
from tests.sources.fuelstats.client import err, minimal, nailgun_task, ok, oswl, post

TODAY = dt.datetime.now(dt.UTC).date()


def _rows(resp: httpx.Response) -> list[dict[str, str]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(resp.text)))


def _node(nid: int, roles: list[str]) -> dict[str, Any]:
    return {"id": nid, "roles": roles, "status": "ready", "os": "ubuntu",
            "meta": {"system": {"product": "PowerEdge R630", "manufacturer": "Dell"},
                     "cpu": {"total": 32, "real": 2}, "memory": {"total": 137438953472}}}


def _cluster(cid: int, status: str, nodes: list[dict[str, Any]],
             plugins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": cid, "mode": "ha_compact", "status": status, "nodes_num": len(nodes),
            "nodes": nodes, "release": {"version": "liberty-8.0", "os": "Ubuntu", "name": "L"},
            "attributes": {"libvirt_type": "kvm"}, "fuel_version": "8.0",
            "installed_plugins": plugins or []}


@pytest.fixture(scope="module")
def client(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server with two installations (one filtered), action logs and OSWLs, shared
    by the module's tests (they only read)."""
    tmp = tmp_path_factory.mktemp("exports")
    rules = tmp / "rules.json"
    rules.write_text(json.dumps({"8.0": None}))
    server = LiveServer(module_db_url, env={"DOWNLINK_FUEL_FILTERING_RULES": str(rules)},
                        log=tmp / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            _load(c)
            yield c
    finally:
        server.stop()


def _load(c: httpx.Client) -> None:
    release = {"release": "8.0", "feature_groups": ["mirantis"], "api": "1"}
    plugin = {"name": "lma_collector", "version": "0.9.0", "releases": [],
              "fuel_version": ["8.0"], "package_version": "4.0.0"}
    good = minimal("m1", fuel_release=release, fuel_packages=["nailgun-8.0", "astute-8.0"],
                   clusters_num=2, clusters=[
                       _cluster(1, "operational", [_node(1, ["controller"]),
                                                   _node(2, ["compute", "cinder"])], [plugin]),
                       _cluster(2, "new", [])])
    hidden = minimal("m2", fuel_release={**release, "release": "9.0-qa"}, clusters_num=1,
                     clusters=[_cluster(1, "operational", [_node(1, ["controller"])])])
    for body in (good, hidden):
        ok(post(c, "installation_structure", body), "installation_structure", 201)
    verify = [nailgun_task("m1", 1, name="verify_networks", status="error"),
              nailgun_task("m1", 2, name="verify_networks", status="ready")]
    for item in verify:
        item["body"]["cluster_id"] = 1
    ok(post(c, "action_logs", {"action_logs": verify}), "action_logs")
    two_days_ago = (TODAY - dt.timedelta(days=2)).isoformat()
    vms = {"added": [{"id": "a"}], "current": [{"id": "a", "status": "ACTIVE"},
                                                {"id": "b", "status": "SHUTOFF"}],
           "removed": [], "modified": []}
    ok(post(c, "oswl_stats", {"oswl_stats": [
        oswl("m1", 10, cluster_id=1, created=two_days_ago, data=vms, checksum="v1",
             version_info={"fuel_version": "8.0"}),
        oswl("m2", 11, cluster_id=1, created=two_days_ago, data=vms),
    ]}), "oswl_stats")


def test_clusters_csv(client: httpx.Client) -> None:
    rows = _rows(client.get("/api/v1/csv/clusters"))
    assert [(r["master_node_uid"], r["cluster.id"]) for r in rows] == [("m1", "1"), ("m1", "2")]
    first = rows[0]
    assert first["structure.fuel_packages"] == "nailgun-8.0 astute-8.0"
    assert first["cluster.status"] == "operational"
    assert first["cluster.installed_plugins.count"] == "1"
    assert first["verify_networks_status"] == "ready"  # the latest of the two
    assert rows[1]["verify_networks_status"] == ""


def test_nodes_and_plugins_csv(client: httpx.Client) -> None:
    nodes = _rows(client.get("/api/v1/csv/nodes"))
    assert [(r["cluster_id"], r["node.id"], r["node.roles"]) for r in nodes] == [
        ("1", "1", "controller"), ("1", "2", "compute cinder")]
    assert nodes[0]["node.meta.system.product"] == "PowerEdge R630"
    plugins = _rows(client.get("/api/v1/csv/plugins"))
    assert [(p["master_node_uid"], p["plugin.name"], p["plugin.version"]) for p in plugins] == [
        ("m1", "lma_collector", "0.9.0")]


def test_oswl_daily_series(client: httpx.Client) -> None:
    rows = _rows(client.get("/api/v1/csv/vm"))
    days = [(TODAY - dt.timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert [(r["stats_on_date"], r["vm.id"]) for r in rows] == [
        (d, vm) for d in days for vm in ("a", "b")]
    assert all(r["master_node_uid"] == "m1" for r in rows)  # m2 is filtered
    first_day = {r["vm.id"]: r for r in rows if r["stats_on_date"] == days[0]}
    assert first_day["a"]["is_added"] == "True" and first_day["b"]["is_added"] == "False"
    assert all(r["is_added"] == "False" for r in rows if r["stats_on_date"] != days[0])
    assert rows[0]["version_info.fuel_version"] == "8.0"


def test_archive_of_all_reports(client: httpx.Client) -> None:
    resp = client.get("/api/v1/csv/all")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        names = set(zf.namelist())
        assert {"clusters.csv", "nodes.csv", "plugins.csv", "vm.csv", "flavor.csv"} <= names
        clusters = list(csv.DictReader(io.StringIO(zf.read("clusters.csv").decode())))
        assert len(clusters) == 2


def test_window_and_errors(client: httpx.Client) -> None:
    future = (TODAY + dt.timedelta(days=10)).isoformat()
    old = {"from_date": "2015-01-01", "to_date": "2015-12-31"}
    assert _rows(client.get("/api/v1/csv/clusters", params=old)) == []
    assert _rows(client.get("/api/v1/csv/vm", params=old)) == []
    err(client.get("/api/v1/csv/clusters", params={"from_date": "2016-13-01"}), 400)
    err(client.get("/api/v1/csv/clusters", params={"to_date": "yesterday"}), 400)
    err(client.get("/api/v1/csv/all", params={"from_date": future, "to_date": "2015-01-01"}),
        400)
    err(client.get("/api/v1/csv/unknown_report"), 404)
    err(client.post("/api/v1/csv/clusters"), 405)
