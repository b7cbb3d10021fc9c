"""/api/records from ClickHouse (chdb in this process) answers as the SQL store does."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete

from downlink.analytics.client import connect
from downlink.settings import Settings
from downlink.store.engine import _normalise
from downlink.store.tables import records
from tests.analytics.fleet import load_fleet
from tests.analytics.helpers import app, caught_up

pytestmark = pytest.mark.postgres

QUERIES: tuple[dict[str, str], ...] = (
    {},
    {"limit": "7"},
    {"limit": "5", "before_id": "60"},
    {"classification": "org.clearlinux/crash/clr"},
    {"classification": "org.clearlinux/*/c*"},
    {"severity": "3", "build": "200"},
    {"machine_id": "00000000000000000000000000000003", "limit": "4"},
    {"from_id": "30", "limit": "10"},
    {"created_in_days": "1", "source": "clearlinux"},
    {"since": "2000-01-01", "until": "2100-01-01", "limit": "3"},
    {"ts_capture": "1000"},
    {"source": "nothing"},
    {"format": "csv"},
    {"format": "ndjson", "severity": "2"},
    {"format": "csv", "classification": "org.clearlinux/hello/world", "limit": "9"},
)


# The dashboards (rollups on SQL, the records themselves on ClickHouse).
DASHBOARDS: tuple[tuple[str, dict[str, str]], ...] = (
    ("/stats.json", {}),
    ("/stats.json", {"range": "7d"}),
    ("/stats.json", {"classification": "org.clearlinux/crash/*"}),
    ("/stats.json", {"severity": "3", "build": "200"}),
    ("/stats.json", {"source": "clearlinux", "platform": "Dell Inc.|XPS 13|1.0"}),
    ("/stats.json", {"from": "2020-01-01", "to": "2020-01-31"}),
    ("/builds.json", {}),
    ("/builds.json", {"classification": "org.clearlinux/hello/world", "range": "24h"}),
    ("/builds.csv", {"severity": "2"}),
    ("/population.json", {}),
    ("/population.json", {"bucket": "week", "range": "90d"}),
    ("/population.json", {"bucket": "month", "range": "ytd", "build": "300"}),
    ("/population.csv", {"bucket": "day", "range": "7d"}),
)


def _answers(client: object, queries: tuple[dict[str, str], ...]) -> list[tuple[int, str, str]]:
    out = []
    for params in queries:
        r = client.get("/api/records", params=params)  # type: ignore[attr-defined]
        out.append((r.status_code, r.headers.get("x-next-cursor", ""), r.text))
    for path, params in DASHBOARDS:
        r = client.get(path, params=params)  # type: ignore[attr-defined]
        out.append((r.status_code, "", r.text))
    return out


def test_records_api_same_answers(db_url: str, analytics_url: str, fixtures_dir: Path) -> None:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0)
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        load_fleet(ch_app, fixtures_dir)
        states = caught_up(ch_app)
        assert any(s["name"] == "analytics_records" for s in states)
        from_clickhouse = _answers(ch_app, QUERIES)
    with app(settings) as sql_app:
        from_sql = _answers(sql_app, QUERIES)
    assert from_clickhouse == from_sql
    assert all(status == 200 for status, _, _ in from_sql)
    assert len(from_sql[0][2]) > 10_000  # the answers carry records
    assert '"records":' in from_sql[len(QUERIES)][2]  # and the dashboard counts
    assert '"300":[' in from_sql[-2][2].replace(" ", "")  # machines of build 300

    # The answers came from ClickHouse: records deleted from SQL are still listed there.
    engine = create_engine(_normalise(db_url))
    with engine.begin() as conn:
        conn.execute(delete(records).where(records.c.id <= 10))
    engine.dispose()
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        listed = ch_app.get("/api/records", params={"limit": "10000"}).json()["records"]
    ids = [r["id"] for r in listed]
    assert min(ids) == 1
    ch = connect(analytics_url)
    assert ch.query(f"SELECT count() FROM {ch.table('records')} FINAL")[0][0] == len(ids)
