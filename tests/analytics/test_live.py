"""A real server started with ``DOWNLINK_ANALYTICS_URL=chdb://…``: SIGKILLed while its
shippers run, it converges to one row per record in every table (records, OONI
fastpath rows, fuel-stats action logs), and it answers pages and APIs as a server on
the same database without the setting.

The kill lands wherever the shippers are (it cannot be forced between a ClickHouse
insert and its cursor's commit from outside the process); the replay of shipped rows
that such a kill causes is then forced for every table with ``downlink reprocess
--source analytics``, and the rows are counted after ``OPTIMIZE … FINAL``. chdb opens a
folder from one process only: the server, the reprocess and the count each run in
their own process, never this one.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from downlink.sources.fuelstats.tables import action_logs
from downlink.sources.ooni.tables import measurements
from downlink.store.engine import _normalise
from downlink.store.tables import records as records_table
from downlink.testing import cli
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.analytics.fleet import load_fleet
from tests.sources.fuelstats.test_analytics import UIDS
from tests.sources.fuelstats.test_analytics import load as load_fuel
from tests.sources.ooni.test_api_http import recent
from tests.sources.ooni.test_clickhouse import submit

pytestmark = pytest.mark.postgres

SHIPPERS = ("analytics_records", "analytics_ooni_fastpath", "analytics_fuel_action_logs")

COUNT = """
import json, sys, clickhouse_connect
c = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
keys = {"records": "id", "ooni_fastpath": "measurement_uid",
        "fuel_action_logs": "(master_node_uid, external_id)"}
out = {}
for table, key in keys.items():
    c.command(f"OPTIMIZE TABLE downlink.{table} FINAL")
    out[table] = list(c.query(f"SELECT count(), uniqExact({key}) FROM downlink.{table}")
                      .result_rows[0])
print(json.dumps(out))
"""


def _queries() -> list[tuple[str, dict[str, str]]]:
    today = dt.datetime.now(dt.UTC).date()
    window = {"since": (today - dt.timedelta(days=2)).isoformat(),
              "until": (today + dt.timedelta(days=1)).isoformat()}
    return [
        ("/api/records", {"limit": "50"}),
        ("/api/records", {"format": "csv", "classification": "org.clearlinux/crash/clr"}),
        ("/crashes.json", {}),
        ("/stats.json", {}),
        ("/mce.json", {}),
        ("/api/v1/measurements", {"limit": "30"}),
        ("/api/v1/aggregation", {"axis_x": "probe_cc", "axis_y": "test_name", **window}),
        *((f"/api/v1/json/action_logs/{uid}", {}) for uid in UIDS),
        ("/api/v1/csv/clusters", {}),
    ]


def _strip(body: Any) -> Any:
    """Drop what measures time."""
    if isinstance(body, dict):
        return {k: _strip(v) for k, v in body.items()
                if k not in ("query_time", "elapsed_seconds", "exec_time")}
    if isinstance(body, list):
        return [_strip(v) for v in body]
    return body


def _answers(http: httpx.Client) -> list[tuple[int, Any]]:
    """Each query's status and body (the server's own address, in links, left out)."""
    out: list[tuple[int, Any]] = []
    for path, params in _queries():
        r = http.get(path, params=params)
        body: Any = r.text.replace(str(http.base_url).rstrip("/"), "")
        if "json" in r.headers.get("content-type", ""):
            body = _strip(json.loads(body))
        out.append((r.status_code, body))
    return out


def _shippers(http: httpx.Client) -> dict[str, dict[str, Any]]:
    states = http.get("/consumers.json").json()["consumers"]
    return {s["name"]: s for s in states if s["name"] in SHIPPERS}


def test_live_chdb_server_killed_converges_and_answers_alike(
    db_url: str, tmp_path: Path, fixtures_dir: Path
) -> None:
    folder = tmp_path / "chdb"
    analytics = {"DOWNLINK_ANALYTICS_URL": f"chdb://{folder}", "DOWNLINK_CONSUMER_POLL_S": "0.05"}
    msms = list(recent().values())
    server = LiveServer(db_url, env=analytics, log=tmp_path / "chdb.log").start(timeout=120)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            records = load_fleet(http, fixtures_dir, count=30)
            uids = [submit(http, msm) for msm in msms[:11]]
            logs = load_fuel(http, fixtures_dir, UIDS[:2])
            assert _shippers(http).keys() == set(SHIPPERS)
            server.kill()  # while the shippers work through what was just committed
            server.start(timeout=120)
            records += load_fleet(http, fixtures_dir, count=30)
            uids += [submit(http, msm) for msm in msms[11:]]
            logs += load_fuel(http, fixtures_dir, UIDS[2:])
            wait_caught_up(server.url, timeout=120)
            assert all(s["error"] is None for s in _shippers(http).values())
            lag = [line for line in http.get("/metrics").text.splitlines()
                   if line.startswith("downlink_consumer_lag_records")
                   and "analytics_fuel_action_logs" in line]
            assert len(lag) == 1 and float(lag[0].rsplit(" ", 1)[1]) >= 0
            from_clickhouse = _answers(http)
    finally:
        server.stop()

    # What was stored (the captures posted twice are one record each: same event ids).
    engine = create_engine(_normalise(db_url))
    with engine.connect() as conn:
        stored = {name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                  for name, table in (("records", records_table),
                                      ("ooni", measurements), ("fuel", action_logs))}
    engine.dispose()
    assert stored["records"] <= records and stored["ooni"] == len(uids)
    assert stored["fuel"] == logs
    records = stored["records"]

    # Ship everything again, as a kill between an insert and its commit does.
    replay = cli.run(
        ["reprocess", "--source", "analytics", "--since", "2000-01-01", "--until", "2100-01-01"],
        env={**analytics, "DATABASE_URL": db_url}, timeout=300)
    assert replay.returncode == 0, replay.stderr
    for name, n in (("analytics_records", records), ("analytics_ooni_fastpath", len(uids)),
                    ("analytics_fuel_action_logs", logs)):
        assert f"reprocessed {n} row(s) through {name}" in replay.stdout, replay.stdout
    out = subprocess.run([sys.executable, "-c", COUNT, str(folder)], capture_output=True,
                         text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == {"records": [records, records],
                                      "ooni_fastpath": [len(uids), len(uids)],
                                      "fuel_action_logs": [logs, logs]}

    plain = LiveServer(db_url, log=tmp_path / "sql.log").start(timeout=120)
    try:
        with httpx.Client(base_url=plain.url, timeout=30) as http:
            from_sql = _answers(http)
    finally:
        plain.stop()
    assert from_clickhouse == from_sql
    assert all(status == 200 for status, _ in from_sql)
    assert len(from_sql[0][1]["records"]) == 50
    assert [m["measurement_uid"] for m in from_sql[5][1]["results"]] == uids  # newest first
    assert sum(o["external_id"] >= 10 for o in from_sql[7][1]["objs"]) == 8
