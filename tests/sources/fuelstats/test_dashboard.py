"""The dashboard's reports (JSON and CSV twins) and the page in a real browser."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from downlink.sources.fuelstats.dashboard import report_filter
from downlink.testing.consumers import wait_caught_up
from tests.sources.fuelstats.client import minimal, nailgun_task, ok, post
from tests.sources.fuelstats.conftest import Served

CHROMIUM = Path("/usr/bin/chromium")


def _node(nid: int, roles: list[str]) -> dict[str, Any]:
    return {"id": nid, "roles": roles, "status": "ready",
            "meta": {"system": {"manufacturer": "Dell", "product": "PowerEdge R630"}}}


def _cluster(cid: int, status: str, hypervisor: str, os_name: str,
             nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": cid, "mode": "ha_compact", "status": status, "nodes_num": len(nodes),
            "nodes": nodes, "attributes": {"libvirt_type": hypervisor},
            "release": {"version": "mitaka-9.0", "os": os_name, "name": "Mitaka"}}


def _task(ext: int, name: str, status: str, cluster: int, start: str, end: str) -> Any:
    log = nailgun_task("m1", ext, name=name, status=status, start=start, end=end)
    log["body"]["cluster_id"] = cluster
    return log


@pytest.fixture(scope="module")
def loaded(served: Served) -> Served:
    """Two installations, their environments and nodes, deployments and health checks."""
    c = served.client
    m1 = minimal("m1", fuel_release={"release": "9.0", "feature_groups": [], "api": "1"},
                 clusters_num=2, clusters=[
                     _cluster(1, "operational", "kvm", "Ubuntu",
                              [_node(1, ["controller"]), _node(2, ["compute", "cinder"]),
                               _node(3, ["cinder", "compute"])]),
                     _cluster(2, "error", "qemu", "CentOS", [_node(4, ["controller"])])])
    m2 = minimal("m2", fuel_release={"release": "8.0", "feature_groups": [], "api": "1"},
                 clusters_num=1, clusters=[_cluster(1, "new", "kvm", "Ubuntu", [])])
    for body in (m1, m2):
        ok(post(c, "installation_structure", body), "installation_structure", 201)
    day = "2016-05-01T"
    logs = [
        _task(1, "deployment", "error", 1, day + "10:00:00", day + "10:30:00"),
        _task(2, "deployment", "error", 1, day + "10:40:00", day + "10:50:00"),
        _task(3, "deployment", "ready", 1, day + "11:00:00", day + "11:20:00"),
        _task(4, "deployment", "ready", 2, day + "12:00:00", day + "12:40:00"),
        _task(5, "verify_networks", "error", 1, day + "09:00:00", day + "09:01:00"),
        _task(6, "verify_networks", "ready", 1, day + "09:10:00", day + "09:11:00"),
        _task(7, "verify_networks", "ready", 1, day + "09:20:00", day + "09:21:00"),
    ]
    ok(post(c, "action_logs", {"action_logs": logs}), "action_logs")
    wait_caught_up(c)  # failures before success: counted by a consumer after the ack
    return served


def _pairs(items: list[dict[str, Any]]) -> dict[str, int]:
    return {i["label"]: i["count"] for i in items}


def test_reports(loaded: Served) -> None:
    data = loaded.client.get("/fuel.json").json()
    assert data["summary"] == {"installations": 2, "environments": 3,
                               "operable_environments": 2, "nodes": 4}
    assert _pairs(data["fuel_releases"]) == {"9.0": 1, "8.0": 1}
    assert _pairs(data["statuses"]) == {"operational": 1, "error": 1, "new": 1}
    assert _pairs(data["environments_per_installation"]) == {"1": 1, "2": 1}
    assert _pairs(data["environment_sizes"])["1-5"] == 2
    assert _pairs(data["nodes_per_installation"])["1-5"] == 1
    assert _pairs(data["hypervisors"]) == {"kvm": 1, "qemu": 1}
    assert _pairs(data["operating_systems"]) == {"ubuntu": 1, "centos": 1}
    assert _pairs(data["openstack_releases"]) == {"mitaka-9.0": 3}
    assert _pairs(data["role_combinations"]) == {"cinder+compute": 2, "controller": 2}
    assert _pairs(data["hardware"]) == {"Dell PowerEdge R630": 4}
    assert data["deployment_time"] == {"average_s": 1800.0, "deployments": 2}
    assert data["failures_before_success"] == {"average": 1.0, "environments": 2}
    assert data["health_checks"] == [{"check": "verify_networks", "runs": 3, "failed": 1}]
    assert data["releases"] == ["8.0", "9.0"]


def test_filters(loaded: Served) -> None:
    of_8 = loaded.client.get("/fuel.json", params={"release": "8.0"}).json()
    assert of_8["summary"]["installations"] == 1
    assert of_8["summary"]["environments"] == 1
    assert of_8["deployment_time"] == {"average_s": None, "deployments": 0}
    old = loaded.client.get("/fuel.json", params={"from": "2015-01-01", "to": "2015-12-31"})
    assert old.json()["summary"]["installations"] == 0
    assert old.json()["health_checks"] == []
    bad = loaded.client.get("/fuel.json", params={"from": "2015-13-01"})
    assert bad.status_code == 400 and "from" in bad.json()["message"]
    # Time-range presets: the action logs arrived in 2016, the structures today.
    week = loaded.client.get("/fuel.json", params={"range": "7d"}).json()
    assert week["summary"]["installations"] == 2 and week["filter"]["range"] == "7d"
    assert loaded.client.get("/fuel.json", params={"range": "2w"}).status_code == 400
    page = loaded.client.get("/fuel", params={"range": "7d", "release": "9.0"}).text
    assert 'href="?release=9.0&amp;range=30d" data-range="30d"' in page
    assert 'data-range="7d" class="current"' in page
    assert 'href="/builds?range=7d"' in page and 'href="/ooni/chart?range=7d"' in page


def test_a_preset_is_a_range_of_whole_days_and_dates_win() -> None:
    today = dt.datetime.now(dt.UTC).date()
    found, form = report_filter({"range": "7d", "release": "9.0"})
    assert found.since == dt.datetime.combine(today - dt.timedelta(days=6), dt.time(),
                                              dt.UTC).timestamp()
    assert found.until == dt.datetime.combine(today + dt.timedelta(days=1), dt.time(),
                                              dt.UTC).timestamp()
    assert form == {"release": "9.0", "from": "", "to": "", "range": "7d"}
    dated, _ = report_filter({"range": "7d", "from": "2016-05-01"})
    assert dated.since == dt.datetime(2016, 5, 1, tzinfo=dt.UTC).timestamp()
    assert dated.until is None


def test_the_search_box_finds_a_master_node(loaded: Served) -> None:
    found = loaded.client.get("/search.json", params={"q": "m1"}).json()["found"]
    node = found["fuel_master_node"]
    assert (node["master_node_uid"], node["release"], node["environments"]) == ("m1", "9.0", 2)
    page = loaded.client.get("/search", params={"q": "m2"}).text
    assert 'class="fuel-master-node">Fuel master node m2: release 8.0, 1 environments' in page
    assert 'href="/fuel?release=8.0"' in page and 'id="no-results"' not in page
    assert 'href="/api/v1/json/installation_info/m2"' in page
    assert loaded.client.get("/search.json", params={"q": "m"}).json()["found"][
        "fuel_master_node"] is None


def test_csv_twin(loaded: Served) -> None:
    resp = loaded.client.get("/fuel.csv", params={"release": "9.0"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = {(r["report"], r["label"]): r["count"]
            for r in csv.DictReader(io.StringIO(resp.text))}
    assert rows[("summary", "installations")] == "1"
    assert rows[("hypervisors", "kvm")] == "1"
    assert rows[("health_checks", "verify_networks failed")] == "1"


def test_pages_render(loaded: Served) -> None:
    page = loaded.client.get("/fuel")
    assert page.status_code == 200 and "<h1>Fuel stats</h1>" in page.text
    assert 'href="/fuel"' in page.text  # the navigation tab from the source registry
    deadline = time.monotonic() + 30  # the consumer runs after the ack (PostgreSQL: +5 s)
    while "m1/1" not in (failures := loaded.client.get("/fuel/failures")).text:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert failures.status_code == 200
    assert "m1/2" in failures.text and "unconfigured" in failures.text
    assert "m1/3" not in failures.text  # a successful deployment
    # JSON and CSV twins, linked from the page; the JSON is the admin API's data.
    assert 'href="/fuel/failures.json?"' in failures.text
    assert 'class="csv" href="/fuel/failures.csv?"' in failures.text
    twin = loaded.client.get("/fuel/failures.json").json()["failures"]
    assert [f["failure_key"] for f in twin] == [
        f["failure_key"] for f in loaded.client.get("/api/v1/fuel/failures").json()["failures"]]
    rows = list(csv.DictReader(io.StringIO(loaded.client.get("/fuel/failures.csv").text)))
    assert [r["failure_key"] for r in rows] == [f["failure_key"] for f in twin]
    assert {r["master_node_uid"] for r in rows} == {"m1"} and rows[0]["created_at"][:2] == "20"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            yield b
        finally:
            b.close()


@pytest.mark.browser
def test_dashboard_in_browser(loaded: Served, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(loaded.server.url + "/records")
        with page.expect_navigation():
            page.click("nav.top >> text=Fuel")
        assert page.inner_text("h1") == "Fuel stats"
        page.wait_for_function(
            "document.querySelectorAll('canvas').length > 0 && "
            "document.querySelectorAll('canvas').length === "
            "document.querySelectorAll('canvas[data-rendered]').length")
        assert page.locator("canvas[data-rendered]").count() == 11
        page.select_option("select[name=release]", "8.0")
        with page.expect_navigation():
            page.click("form.filters button[type=submit]")
        assert "release=8.0" in page.url
        assert page.inner_text("#fuel-summary").split("\n")[0].endswith("1")
        assert errors == []
    finally:
        context.close()
    assert httpx.get(loaded.server.url + "/fuel.json?release=8.0").json()["summary"][
        "installations"] == 1
