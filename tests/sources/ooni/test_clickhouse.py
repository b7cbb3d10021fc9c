"""The OONI measurements and aggregation API from ClickHouse answer as from SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from downlink.analytics.client import connect
from downlink.settings import Settings
from tests.analytics.helpers import app, caught_up
from tests.sources.ooni.test_api_http import recent

pytestmark = pytest.mark.postgres


def submit(client: httpx.Client, msm: dict[str, Any]) -> str:
    """Open a report and submit ``msm`` to it; returns its measurement_uid."""
    r = client.post("/report", json={
        "data_format_version": "0.2.0", "format": "json",
        "probe_asn": msm["probe_asn"], "probe_cc": msm["probe_cc"],
        "software_name": msm.get("software_name", "x"),
        "software_version": msm.get("software_version", "1"),
        "test_name": msm["test_name"], "test_start_time": "2020-01-01 00:00:00",
        "test_version": msm.get("test_version", "0.1"),
    })
    assert r.status_code == 200, r.text
    rid = r.json()["report_id"]
    r = client.post(f"/report/{rid}", json={"format": "json", "content": msm})
    assert r.status_code == 200, r.text
    uid: str = r.json()["measurement_uid"]
    return uid


def _queries() -> list[tuple[str, dict[str, str]]]:
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    until = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    window = {"since": since, "until": until}
    return [
        ("/api/v1/measurements", {}),
        ("/api/v1/measurements", {"limit": "4"}),
        ("/api/v1/measurements", {"limit": "3", "offset": "6", "order": "asc"}),
        ("/api/v1/measurements", {"probe_cc": "IR", "anomaly": "true", **window}),
        ("/api/v1/measurements", {"test_name": "web_connectivity,tor", "failure": "false"}),
        ("/api/v1/measurements", {"probe_asn": "AS197207,AS30722", "confirmed": "false"}),
        ("/api/v1/measurements", {"domain": "www.example.com"}),
        ("/api/v1/measurements", {"since": "2020-01-01", "until": "2020-02-01"}),
        ("/api/v1/aggregation", {**window}),
        ("/api/v1/aggregation", {"axis_x": "measurement_start_day", **window,
                                 "time_grain": "hour"}),
        ("/api/v1/aggregation", {"axis_x": "probe_cc", "axis_y": "test_name", **window}),
        ("/api/v1/aggregation", {"axis_x": "measurement_start_day", "axis_y": "probe_asn",
                                 "since": "2020-01-01", "until": until, "time_grain": "month"}),
        ("/api/v1/aggregation", {"axis_x": "blocking_type", "probe_cc": "IR,IT", **window}),
        ("/api/v1/aggregation", {"axis_x": "domain", "format": "CSV", **window}),
        ("/api/v1/aggregation", {"axis_x": "nope"}),
        # By category: the test lists are in the SQL store only, so these are answered
        # there with ClickHouse configured too (same answers, never a 500).
        ("/api/v1/measurements", {"category_code": "NEWS"}),
        ("/api/v1/aggregation", {"axis_x": "category_code", **window}),
        ("/api/v1/aggregation", {"axis_x": "probe_cc", "category_code": "NEWS", **window}),
    ]


def _strip(body: Any) -> Any:
    """Drop what measures time (query_time, elapsed_seconds)."""
    if isinstance(body, dict):
        return {k: _strip(v) for k, v in body.items()
                if k not in ("query_time", "elapsed_seconds")}
    if isinstance(body, list):
        return [_strip(v) for v in body]
    return body


def _answers(client: TestClient) -> list[tuple[int, Any]]:
    out = []
    for path, params in _queries():
        r = client.get(path, params=params)
        ctype = r.headers.get("content-type", "")
        out.append((r.status_code, _strip(r.json()) if "json" in ctype else r.text))
    return out


def test_measurements_and_aggregation_same_answers(db_url: str, analytics_url: str) -> None:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0)
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        uids = [submit(ch_app, msm) for msm in recent().values()]
        caught_up(ch_app)
        from_clickhouse = _answers(ch_app)
    with app(settings) as sql_app:
        from_sql = _answers(sql_app)
    assert from_clickhouse == from_sql
    first = from_sql[0][1]
    assert [r["measurement_uid"] for r in first["results"]] == uids  # newest first, all 21
    assert from_sql[8][1]["result"]["measurement_count"] == len(uids)
    assert [status for status, _ in from_clickhouse[-3:]] == [200, 200, 200]
    ch = connect(analytics_url)
    assert ch.query(f"SELECT count() FROM {ch.table('ooni_fastpath')} FINAL")[0][0] == len(uids)
