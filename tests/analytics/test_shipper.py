"""Shipping is idempotent: a replay converges to one row per record; backfills; failures."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from downlink.analytics.client import connect
from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.analytics.fleet import load_fleet
from tests.analytics.helpers import app, caught_up
from tests.wire import v2_headers

pytestmark = pytest.mark.postgres


def _counts(analytics_url: str) -> tuple[int, int]:
    """(rows, rows seen through FINAL) of the records table."""
    ch = connect(analytics_url)
    table = ch.table("records")
    return (int(ch.query(f"SELECT count() FROM {table}")[0][0]),
            int(ch.query(f"SELECT count() FROM {table} FINAL")[0][0]))


def test_replay_and_backfill_converge(db_url: str, analytics_url: str, fixtures_dir: Path) -> None:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0)
    # Records stored before the analytics store existed are not shipped...
    with app(settings) as sql_app:
        n = load_fleet(sql_app, fixtures_dir, count=40)
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        # ...until the shipper, new here, starts from the beginning of the log.
        caught_up(ch_app)
        assert _counts(analytics_url) == (n, n)
    # A backfill replays everything again (as a crash before the cursor's commit would):
    # the copies replace the rows, one row per record.
    today = dt.datetime.now(dt.UTC).date().isoformat()
    env = {"DATABASE_URL": db_url, "DOWNLINK_ANALYTICS_URL": analytics_url}
    args = ["reprocess", "--source", "analytics", "--since", today, "--until", today]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"reprocessed {n} row(s) through analytics_records" in result.output
    raw, final = _counts(analytics_url)
    assert final == n and raw in (n, 2 * n)  # 2n until ClickHouse merges the parts
    ch = connect(analytics_url)
    ch.command(f"OPTIMIZE TABLE {ch.table('records')} FINAL")
    assert _counts(analytics_url) == (n, n)
    dry = CliRunner().invoke(cli, [*args, "--dry-run"], env=env)
    assert f"would reprocess {n} records row(s) through analytics_records" in dry.output
    # Without the setting the shippers do not exist.
    none = CliRunner().invoke(cli, args, env={"DATABASE_URL": db_url})
    assert none.exit_code != 0 and "no source 'analytics'" in none.output


def test_clickhouse_down_never_blocks_ingestion(db_url: str, tmp_path: Path) -> None:
    # A ClickHouse server that is not there: records are still taken, the shipper waits.
    settings = Settings(database_url=db_url, batch_wait_ms=1.0,
                        analytics_url="clickhouse://127.0.0.1:9/db", consumer_retry_max_s=0.5)
    with app(settings) as client:
        for _ in range(3):
            r = client.post("/v2/collector", headers=v2_headers(), content=b"x")
            assert r.status_code == 201
        deadline = time.monotonic() + 20
        while True:
            state = {c["name"]: c for c in client.get("/consumers.json").json()["consumers"]}
            shipper = state["analytics_records"]
            if shipper["error"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert shipper["lag_records"] == 3 and shipper["error"]
        assert state["ooni_fastpath"]["error"] is None
        # Reads served from ClickHouse answer 503 meanwhile, the others as usual.
        for path in ("/api/records", "/api/v1/aggregation", "/stats.json",
                     "/api/v1/json/action_logs/m1", "/api/v1/csv/clusters", "/api/v1/csv/all"):
            r = client.get(path)
            assert r.status_code == 503 and "analytics store" in r.json()["message"], path
        assert client.get("/api/records/1").status_code == 200
        assert client.get("/api/v1/csv/nodes").status_code == 200  # no action logs read


CHECK = """
import sys, clickhouse_connect
c = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
c.command("OPTIMIZE TABLE downlink.records FINAL")
print(c.query("SELECT count(), uniqExact(id) FROM downlink.records").result_rows[0])
"""


def test_sigkill_while_shipping_converges(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "chdb"
    env = {"DOWNLINK_ANALYTICS_URL": f"chdb://{folder}", "DOWNLINK_CONSUMER_POLL_S": "0.05"}
    server = LiveServer(db_url, env=env, log=tmp_path / "server.log").start(timeout=120)
    acked = 0
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for i in range(240):
                r = http.post("/v2/collector", headers=v2_headers(), content=b"p%d" % i)
                assert r.status_code == 201
                acked += 1
                if i == 150:
                    os.killpg(server.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
                    server.proc.wait(10)  # type: ignore[union-attr]
                    server.proc = None
                    server.start(timeout=120)
    finally:
        pass  # the server is stopped below, once caught up
    try:
        wait_caught_up(server.url, timeout=60)
    finally:
        server.stop()
    out = subprocess.run([sys.executable, "-c", CHECK, str(folder)], capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == f"({acked}, {acked})"
