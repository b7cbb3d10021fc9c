"""Refiltering stored installations (a background job), contact purges, API tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from downlink.testing.live import LiveServer
from tests.sources.fuelstats.client import err, info, minimal, ok, post, write_rules


def _structure(uid: str, release: str, **extra: Any) -> dict[str, Any]:
    return minimal(uid, fuel_release={"release": release, "feature_groups": [], "api": "1"},
                   **extra)


def test_refilter_job(fuel_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    """Changed rules reach stored installations through the refilter job."""
    rules = tmp_path / "rules.json"
    rules.write_text("null")
    server = fuel_server({"DOWNLINK_FUEL_FILTERING_RULES": str(rules)})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        err(client.get("/api/v1/fuel/refilter"), 404)
        def send(n: int) -> None:
            release = "9.0" if n % 3 else "qa"
            ok(post(client, "installation_structure", _structure(f"m{n}", release)),
               "installation_structure", 201)

        # More than two job steps; 8 at a time, as a fleet posts (they share commits).
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(1200)))
        assert client.get("/api/v1/json/summary").json()["installation_structures"][
            "filtered"] == 0
        write_rules(rules, {"9.0": None})
        queued = client.post("/api/v1/fuel/refilter")
        assert queued.status_code == 202, queued.text
        assert queued.json()["state"] in ("pending", "running", "done")
        deadline = time.monotonic() + 60
        while (status := client.get("/api/v1/fuel/refilter").json())["state"] != "done":
            assert status["state"] in ("pending", "running"), status
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["changed"] == 400
        summary = client.get("/api/v1/json/summary").json()["installation_structures"]
        assert summary == {"total": 1200, "filtered": 400, "not_filtered": 800}
        assert info(client, "m0")["is_filtered"] is True
        assert info(client, "m1")["is_filtered"] is False
        assert client.get("/api/v1/json/report/installations").json()[
            "installations"]["count"] == 800
        rules.write_text("{broken")
        err(client.post("/api/v1/fuel/refilter"), 400)


def test_purge_contact(fuel_server: Callable[..., LiveServer]) -> None:
    """A master node's contact details can be removed on request."""
    server = fuel_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        contact = {"contact_info_provided": True, "email": "a@b.example", "name": "A",
                   "company": "B"}
        ok(post(client, "installation_structure", minimal("m1", user_information=contact)),
           "installation_structure", 201)
        assert info(client, "m1")["structure"]["user_information"]["email"] == "a@b.example"
        resp = client.delete("/api/v1/fuel/contacts/m1")
        assert resp.status_code == 200, resp.text
        assert info(client, "m1")["structure"]["user_information"] == {
            "contact_info_provided": False}
        err(client.delete("/api/v1/fuel/contacts/unknown"), 404)
        err(client.get("/api/v1/fuel/contacts/m1"), 405)


def test_tokens(fuel_server: Callable[..., LiveServer]) -> None:
    """With API tokens: the collector and the public report stay open, the rest not."""
    server = fuel_server({"DOWNLINK_API_TOKENS": "s3cret"})
    auth = {"Authorization": "Bearer s3cret"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ok(client.get("/api/v1/ping/"), "ping")
        ok(client.get("/api/v1/ping"), "ping")
        ok(post(client, "installation_structure", minimal("m1")), "installation_structure", 201)
        ok(post(client, "action_logs", {"action_logs": []}), "action_logs")
        ok(post(client, "oswl_stats", {"oswl_stats": []}), "oswl_stats")
        assert client.get("/api/v1/json/report/installations").status_code == 200
        assert client.get("/api/v1/json/summary").status_code == 200
        for path in ("/api/v1/json/installation_info/m1", "/api/v1/json/action_logs/m1",
                     "/api/v1/csv/clusters", "/api/v1/fuel/failures", "/fuel"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=auth).status_code == 200, path
        assert client.post("/api/v1/fuel/refilter").status_code == 401
        assert client.delete("/api/v1/fuel/contacts/m1").status_code == 401
        assert json.loads(client.get("/api/v1/json/installation_info/m1",
                                     headers=auth).text)["master_node_uid"] == "m1"
