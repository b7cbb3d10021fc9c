"""Fuel-stats action logs in ClickHouse (chdb in this process): shipped, backfilled,
replayed to one row per log, and read with the same answers as from the SQL store."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete

from downlink.analytics.client import connect
from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.fuelstats.tables import action_logs
from downlink.store.engine import _normalise
from tests.analytics.helpers import app, caught_up
from tests.sources.fuelstats.client import minimal, nailgun_task

pytestmark = pytest.mark.postgres

UIDS = ("m-a", "m-b", "m-c")
TODAY = dt.datetime.now(dt.UTC).date()


def _cluster(cid: int) -> dict[str, Any]:
    return {"id": cid, "mode": "ha_compact", "status": "operational", "nodes_num": 0,
            "nodes": [], "release": {"version": "liberty-8.0", "os": "Ubuntu", "name": "L"},
            "attributes": {"libvirt_type": "kvm"}, "fuel_version": "8.0",
            "installed_plugins": []}


def _logs(uid: str, n: int, fixtures_dir: Path) -> list[dict[str, Any]]:
    """``n`` nailgun tasks (deployments and verify_networks on clusters 1-3, some
    failed, some subtasks) and the sample http_request logs, for ``uid``."""
    items = []
    for i in range(n):
        name = "verify_networks" if i % 3 == 0 else "deployment"
        status = "error" if i % 4 == 1 else "ready"
        item = nailgun_task(uid, 10 + i, name=name, status=status,
                            parent=None if i % 5 else 1)
        item["body"]["cluster_id"] = 1 + i // 3 % 3
        items.append(item)
    sample = json.loads((fixtures_dir / "fuel-stats" / "examples"
                         / "action_logs_valid_http_request.json").read_text())
    for item in copy.deepcopy(sample["action_logs"]):
        item["master_node_uid"] = uid
        items.append(item)
    return items


def load(client: httpx.Client, fixtures_dir: Path, uids: Sequence[str] = UIDS) -> int:
    """Installations and their action logs; returns how many logs were stored."""
    stored = 0
    for uid in uids:
        k = UIDS.index(uid)
        r = client.post("/api/v1/installation_structure/", json=minimal(
            uid, clusters_num=4, clusters=[_cluster(c) for c in (1, 2, 3, 4)]))
        assert r.status_code == 201, r.text
        r = client.post("/api/v1/action_logs/", json={"action_logs": _logs(uid, 8 + 7 * k,
                                                                           fixtures_dir)})
        assert r.status_code == 200, r.text
        stored += sum(1 for s in r.json()["action_logs"] if s["status"] == "added")
    return stored


def _page(limit: int, offset: int) -> dict[str, str]:
    return {"paging_params": json.dumps({"limit": limit, "offset": offset})}


QUERIES: list[tuple[str, dict[str, str]]] = [
    *((f"/api/v1/json/action_logs/{uid}", {}) for uid in UIDS),
    ("/api/v1/json/action_logs/m-c", _page(5, 3)),
    ("/api/v1/json/action_logs/m-c", _page(0, 0)),
    ("/api/v1/json/action_logs/m-b", _page(10, 1000)),
    ("/api/v1/json/action_logs/unknown", {}),
    ("/api/v1/json/action_logs/m-a", {"paging_params": '{"limit": -1}'}),
    ("/api/v1/json/summary", {}),
    ("/api/v1/csv/clusters", {}),
    ("/api/v1/csv/clusters", {"from_date": (TODAY - dt.timedelta(days=9)).isoformat(),
                              "to_date": (TODAY - dt.timedelta(days=1)).isoformat()}),
    ("/api/v1/csv/clusters", {"from_date": "nope"}),
]


def _answers(client: TestClient) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for path, params in QUERIES:
        r = client.get(path, params=params)
        ctype = r.headers.get("content-type", "")
        body = r.json() if "json" in ctype else r.text
        if isinstance(body, dict):
            body.pop("exec_time", None)
        out.append((r.status_code, body))
    r = client.get("/api/v1/csv/all")
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        out.append((200, zf.read("clusters.csv").decode()))
    return out


def _counts(url: str) -> tuple[int, int]:
    ch = connect(url)
    table = ch.table("fuel_action_logs")
    return (int(ch.query(f"SELECT count() FROM {table}")[0][0]),
            int(ch.query(f"SELECT count() FROM {table} FINAL")[0][0]))


def test_action_logs_shipped_and_read_alike(
    db_url: str, analytics_url: str, fixtures_dir: Path
) -> None:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0)
    # Logs stored before the analytics store existed...
    with app(settings) as sql_app:
        n = load(sql_app, fixtures_dir)
        from_sql = _answers(sql_app)
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        # ...are shipped by the new shipper from the start of the log (a backfill).
        states = {s["name"]: s for s in caught_up(ch_app)}
        assert states["analytics_fuel_action_logs"]["handled"] == n
        from_clickhouse = _answers(ch_app)
    assert _counts(analytics_url) == (n, n)
    assert from_clickhouse == from_sql
    assert [status for status, _ in from_sql[-4:]] == [200, 200, 400, 200]
    assert from_sql[0][1]["paging_params"]["total"] == 8 + 3
    # m-c's logs by external id: the sample's 0-2, then the tasks from 10.
    assert [o["external_id"] for o in from_sql[3][1]["objs"]] == [10, 11, 12, 13, 14]
    clusters = list(csv.DictReader(io.StringIO(from_sql[-4][1])))
    statuses = {(r["master_node_uid"], r["cluster.id"]): r["verify_networks_status"]
                for r in clusters}
    # Task i is a verify_networks when i % 3 == 0, on cluster 1 + i // 3 % 3, failed
    # when i % 4 == 1: m-b's latest on cluster 1 is task 9 (failed), m-c's on cluster 2
    # task 21 (failed), m-a's all ready; nobody verified cluster 4.
    assert statuses[("m-a", "1")] == statuses[("m-a", "3")] == "ready"
    assert statuses[("m-b", "1")] == statuses[("m-c", "2")] == "error"
    assert {statuses[(uid, "4")] for uid in UIDS} == {""}
    assert from_sql[-3][1].count("\n") == 1  # nothing received in a past window

    # A backfill ships everything again: the copies replace the rows.
    env = {"DATABASE_URL": db_url, "DOWNLINK_ANALYTICS_URL": analytics_url}
    args = ["reprocess", "--source", "analytics", "--since", TODAY.isoformat(),
            "--until", TODAY.isoformat(), "--consumer", "analytics_fuel_action_logs"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"reprocessed {n} row(s) through analytics_fuel_action_logs" in result.output
    assert _counts(analytics_url)[1] == n
    ch = connect(analytics_url)
    ch.command(f"OPTIMIZE TABLE {ch.table('fuel_action_logs')} FINAL")
    assert _counts(analytics_url) == (n, n)

    # The answers came from ClickHouse: logs deleted from SQL are still listed there.
    engine = create_engine(_normalise(db_url))
    with engine.begin() as conn:
        conn.execute(delete(action_logs).where(action_logs.c.master_node_uid == "m-a"))
    engine.dispose()
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        after = _answers(ch_app)
        assert after[0] == from_sql[0] and after[-4] == from_sql[-4] and after[-1] == from_sql[-1]
    with app(settings) as sql_app:
        assert sql_app.get("/api/v1/json/action_logs/m-a").json()["objs"] == []
        rows = csv.DictReader(io.StringIO(sql_app.get("/api/v1/csv/clusters").text))
        assert {r["verify_networks_status"] for r in rows if r["master_node_uid"] == "m-a"} == {""}
