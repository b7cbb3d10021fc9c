"""The measurements and aggregation API over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.ooni.conftest import fixture_measurements, ooni_server
from tests.sources.ooni.test_probe_services_http import open_report

pytestmark = pytest.mark.postgres


def recent() -> dict[str, dict[str, Any]]:
    """The fixture measurements moved to the last 21 hours, one per hour, in file order.

    Scores depend on the receive time (a measurement more than a year old is a
    failure), so the API is tested on measurements that look fresh.
    """
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    out = {}
    for i, (name, msm) in enumerate(fixture_measurements().items()):
        start = (top - timedelta(hours=i + 1, minutes=-30)).strftime("%Y-%m-%d %H:%M:%S")
        out[name] = {**msm, "measurement_start_time": start, "test_start_time": start}
    return out


def load(server: LiveServer) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Submit every (recent) fixture measurement and score them; file name -> uid."""
    uids = {}
    msms = recent()
    for name, msm in msms.items():
        rid = open_report(server.url, msm)
        r = httpx.post(f"{server.url}/report/{rid}", json={"format": "json", "content": msm})
        uids[name] = r.json()["measurement_uid"]
    wait_caught_up(server.url)
    return uids, msms


def get(server: LiveServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params)


def test_search_lookup_and_aggregation(ooni: LiveServer) -> None:
    uids, msms = load(ooni)
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")

    # Paging through all 21 measurements (the default window is the last 30 days),
    # 2 at a time by following next_url (a keyset cursor).
    seen: list[str] = []
    url: str | None = f"{ooni.url}/api/v1/measurements?limit=2"
    while url:
        meta = (page := httpx.get(url).json())["metadata"]
        seen.extend(item["measurement_uid"] for item in page["results"])
        if len(page["results"]) == 2:
            assert meta["count"] == meta["pages"] == -1 and "cursor=" in meta["next_url"]
        else:
            assert meta["next_url"] is None
            assert meta["count"] == meta["offset"] + len(page["results"]) == 21
        url = meta["next_url"]
    assert seen == [uids[name] for name in msms]  # newest first
    asc = get(ooni, "/api/v1/measurements", order="asc", limit="21").json()["results"]
    assert [i["measurement_uid"] for i in asc] == seen[::-1]
    assert get(ooni, "/api/v1/measurements", since="2020-01-01",
               until="2020-02-01").json()["results"] == []

    # Filters and result shape.
    r = get(ooni, "/api/v1/measurements", since=since, probe_cc="IR", anomaly="true")
    [item] = r.json()["results"]
    assert item["measurement_uid"] == uids["web_connectivity_ir_fp.json"]
    assert item["probe_asn"] == "AS197207" and item["confirmed"] is True
    assert item["measurement_url"].endswith(
        "/api/v1/raw_measurement?measurement_uid=" + item["measurement_uid"])
    start = msms["web_connectivity_ir_fp.json"]["measurement_start_time"]
    assert item["measurement_start_time"] == start.replace(" ", "T") + "Z"
    assert item["scores"]["blocking_country"] == 1.0
    r = get(ooni, "/api/v1/measurements", probe_asn="197207", order="asc")
    assert {i["input"] for i in r.json()["results"]} == {
        "https://www.facebook.com/", "https://yooz.ir/"}
    r = get(ooni, "/api/v1/measurements", test_name="tor,torsf", failure="false")
    assert len(r.json()["results"]) == 3
    r = get(ooni, "/api/v1/measurements", domain="www.facebook.com,yooz.ir", failure="true")
    assert [i["input"] for i in r.json()["results"]] == ["https://yooz.ir/"]
    r = get(ooni, "/api/v1/measurements", report_id=msms[
        "web_connectivity_null2.json"]["report_id"])
    assert [i["failure"] for i in r.json()["results"]] == [True]

    for bad in ({"since": "2020-01-01", "until": "2021-01-01"}, {"limit": "0"},
                {"probe_asn": "ASX"}, {"anomaly": "maybe"}, {"order_by": "input"},
                {"cursor": "!!"}, {"input": "ab"}, {"since": "yesterday"}):
        r = get(ooni, "/api/v1/measurements", **bad)
        assert r.status_code == 400 and "detail" in r.json(), bad

    # Body and metadata lookups.
    uid = uids["tor.json"]
    raw = get(ooni, "/api/v1/raw_measurement", measurement_uid=uid)
    assert raw.json() == msms["tor.json"]
    assert get(ooni, "/api/v1/raw_measurement", measurement_uid="nope").json() == {}
    body = get(ooni, f"/api/v1/measurement/{uid}", download="true")
    assert body.json() == raw.json()
    assert body.headers["content-disposition"].startswith("attachment")
    assert get(ooni, "/api/v1/measurement/missing").status_code == 404
    meta = get(ooni, "/api/v1/measurement_meta", measurement_uid=uid, full="true").json()
    assert meta["measurement_uid"] == uid and meta["failure"] is False
    assert orjson.loads(meta["raw_measurement"]) == raw.json()
    assert orjson.loads(meta["scores"])["extra"]["test_runtime"] is not None
    rid = msms["web_connectivity_ir_fp.json"]["report_id"]
    by_rid = get(ooni, "/api/v1/measurement_meta", report_id=rid,
                 input="https://www.facebook.com/").json()
    assert by_rid["measurement_uid"] == uids["web_connectivity_ir_fp.json"]
    assert "raw_measurement" not in by_rid
    assert get(ooni, "/api/v1/measurement_meta", report_id="bad!").status_code == 422
    assert get(ooni, "/api/v1/measurement_meta").status_code == 400

    # Aggregation.
    r = get(ooni, "/api/v1/aggregation", since=since, axis_x="probe_cc")
    body = r.json()
    assert body["v"] == 0 and body["dimension_count"] == 1
    by_cc = {row["probe_cc"]: row for row in body["result"]}
    assert by_cc["IR"]["measurement_count"] == 2
    assert by_cc["IR"]["confirmed_count"] == 1 and by_cc["IR"]["failure_count"] == 1
    assert by_cc["CN"]["anomaly_count"] == 2  # vanilla_tor 0.98, odd header (dns)
    assert by_cc["IT"]["measurement_count"] == 6
    for row in body["result"]:
        assert row["measurement_count"] == sum(
            row[k] for k in ("anomaly_count", "confirmed_count", "failure_count", "ok_count"))
    total = get(ooni, "/api/v1/aggregation", since=since).json()
    assert total["dimension_count"] == 0
    assert total["result"] == {"anomaly_count": 4, "confirmed_count": 2, "failure_count": 7,
                               "ok_count": 8, "measurement_count": 21}
    r = get(ooni, "/api/v1/aggregation", since=since, test_name="web_connectivity",
            axis_x="measurement_start_day", axis_y="probe_cc", time_grain="hour")
    keys = {(row["measurement_start_day"], row["probe_cc"]) for row in r.json()["result"]}
    assert (start[:13].replace(" ", "T") + ":00:00Z", "IR") in keys
    assert len(keys) == 8
    r = get(ooni, "/api/v1/aggregation", since=since, axis_x="measurement_start_day",
            format="CSV", download="true")
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    days = list(csv.DictReader(io.StringIO(r.text)))
    assert sum(int(d["measurement_count"]) for d in days) == 21
    assert set(days[0]) == {"measurement_start_day", "anomaly_count", "confirmed_count",
                            "failure_count", "ok_count", "measurement_count"}
    r = get(ooni, "/api/v1/aggregation", since="2025-01-01", until="2025-12-31",
            axis_x="measurement_start_day", time_grain="month")
    assert r.status_code == 200 and r.json()["result"] == []
    auto = get(ooni, "/api/v1/aggregation", since=since,
               axis_x="measurement_start_day", time_grain="auto").json()
    assert auto["result"][0]["measurement_start_day"].endswith(":00:00Z")  # hour grain

    # Error shapes: 200 with msg for format / same axes, 400 for bad axis / grain.
    r = get(ooni, "/api/v1/aggregation", format="XML")
    assert (r.status_code, r.json()["v"]) == (200, 0) and "msg" in r.json()
    r = get(ooni, "/api/v1/aggregation", axis_x="probe_cc", axis_y="probe_cc")
    assert r.status_code == 200 and "msg" in r.json()
    r = get(ooni, "/api/v1/aggregation", axis_x="nope")
    assert r.status_code == 400 and r.json()["v"] == 0
    r = get(ooni, "/api/v1/aggregation", since="2022-01-01", until="2023-01-01",
            time_grain="hour")
    assert r.status_code == 400 and "time_grain" in r.json()["msg"]
    r = get(ooni, "/api/v1/aggregation", probe_asn="ASX")
    assert r.status_code == 400 and "detail" in r.json()


def test_quotas_are_shared_by_workers(db_url: str, tmp_path: Path) -> None:
    env = {"DOWNLINK_OONI_QUOTA_HOUR": "6"}
    server = ooni_server(db_url, tmp_path / "q.log", workers=2, env=env)
    other = None
    try:
        statuses = []
        remaining = []
        for _ in range(14):
            # New connections, so both workers serve some of them.
            r = httpx.get(server.url + "/api/v1/measurements", params={"limit": "1"})
            statuses.append(r.status_code)
            remaining.append(int(r.headers["x-ratelimit-remaining"]))
        # 6 units of 10 ms; each request costs at least 1 and the refill over the run
        # (6 units an hour) may let one more through. Buckets per process would let
        # up to twice as many through.
        assert statuses[0] == 200 and statuses[-1] == 429
        assert statuses.count(200) <= 7
        assert statuses.index(429) == statuses.count(200)  # refused from then on
        served = remaining[: statuses.count(200)]
        assert served == sorted(served, reverse=True)
        assert remaining[-1] == 0
        assert httpx.get(server.url + "/api/v1/aggregation").json() == {
            "error": "quota exceeded", "message": "quota exceeded"}
        # Submissions are not metered.
        msm = fixture_measurements()["tor.json"]
        rid = open_report(server.url, msm)
        r = httpx.post(f"{server.url}/report/{rid}", json={"format": "json", "content": msm})
        assert r.status_code == 200
        # Another server process on the same database sees the same buckets.
        other = ooni_server(db_url, tmp_path / "q2.log", env=env)
        assert httpx.get(other.url + "/api/v1/measurements").status_code == 429
    finally:
        server.stop()
        if other is not None:
            other.stop()
