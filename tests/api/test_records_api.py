"""GET /api/records: the Clear Linux parameters, their messages, paging and export."""

from __future__ import annotations

import csv
import io
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from downlink.api.records import parse_filter
from downlink.errors import BadRequest
from tests.wire import v2_headers


def post(client: TestClient, **fields: str) -> int:
    r = client.post("/v2/collector", headers=v2_headers(dict(fields)), content=b"p")
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    post(client, classification="org.clearlinux/hello/world", severity="1", build="100")
    post(
        client,
        classification="org.clearlinux/crash/clr",
        severity="3",
        build="100",
        machine_id="a" * 32,
    )
    post(client, classification="org.clearlinux/crash/clr", severity="3", build="200")
    post(client, classification="org.clearlinux/mce/corrected", severity="2", build='"200"')
    return client


def test_filters(seeded: TestClient) -> None:
    get = seeded.get
    assert len(get("/api/records").json()["records"]) == 4
    crash = get("/api/records", params={"classification": "org.clearlinux/crash/clr"}).json()
    assert [r["build"] for r in crash["records"]] == ["200", "100"]
    assert len(get("/api/records", params={"severity": "3"}).json()["records"]) == 2
    assert len(get("/api/records", params={"build": '"200"'}).json()["records"]) == 2
    only = get("/api/records", params={"machine_id": "a" * 32}).json()["records"]
    assert len(only) == 1 and only[0]["build"] == "100"
    assert len(get("/api/records", params={"created_in_sec": "3600"}).json()["records"]) == 4
    assert len(get("/api/records", params={"created_in_days": "1"}).json()["records"]) == 4
    future = str(int(time.time()) + 3600)
    assert get("/api/records", params={"since": future}).json()["records"] == []


def test_limit_cursor_and_from_id(seeded: TestClient) -> None:
    page = seeded.get("/api/records", params={"limit": "3"}).json()
    assert len(page["records"]) == 3 and page["next_cursor"] == page["records"][-1]["id"]
    rest = seeded.get("/api/records", params={"limit": "3", "before_id": page["next_cursor"]})
    assert len(rest.json()["records"]) == 1 and rest.json()["next_cursor"] is None
    ids = [r["id"] for r in page["records"]] + [r["id"] for r in rest.json()["records"]]
    assert ids == sorted(ids, reverse=True)
    low = min(ids)
    assert len(seeded.get("/api/records", params={"from_id": str(low + 1)}).json()["records"]) == 3
    # limit 5 is valid here (the original compared it as a string and refused it).
    assert len(seeded.get("/api/records", params={"limit": "5"}).json()["records"]) == 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"severity": "x"}, "Severity should be a numeric value"),
        ({"severity": "7"}, "Severity should be a numeric value"),
        ({"classification": "a/b"}, "Classification value is invalid"),
        ({"classification": "a/b/" + "c" * 140}, "Classification value is invalid"),
        ({"build": "b" * 257}, "Build value is invalid"),
        ({"machine_id": "m" * 33}, "Machine id value is invalid"),
        ({"created_in_days": "-1"}, "Created (in days) value is invalid"),
        ({"created_in_sec": "soon"}, "Created (in seconds) value is invalid"),
        ({"from_id": "x"}, "Provided record id value is invalid"),
        ({"limit": "0"}, "Record limit value is invalid"),
        ({"limit": "10001"}, "Record limit value is invalid"),
        ({"limit": "abc"}, "Record limit value is invalid"),
        ({"since": "yesterday"}, "since must be epoch seconds or an ISO 8601 time"),
        ({"format": "xml"}, "format must be json, csv or ndjson"),
    ],
)
def test_bad_parameters_are_400(client: TestClient, params: dict[str, str], message: str) -> None:
    r = client.get("/api/records", params=params)
    assert r.status_code == 400
    assert r.json() == {"message": message}


def test_exports(seeded: TestClient) -> None:
    r = seeded.get("/api/records", params={"format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4 and {row["build"] for row in rows} == {"100", "200"}
    r = seeded.get("/api/records", params={"format": "ndjson", "severity": "3"})
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    assert [line["severity"] for line in lines] == [3, 3]


def test_single_record_and_404(seeded: TestClient) -> None:
    first = seeded.get("/api/records", params={"limit": "1"}).json()["records"][0]
    assert seeded.get(f"/api/records/{first['id']}").json() == first
    assert seeded.get("/api/records/999999").status_code == 404
    assert seeded.get("/api/records/abc").status_code == 400


def test_iso_time_range_parsing() -> None:
    f, limit = parse_filter({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02"}, 10000)
    assert f.received_after == 1767225600.0 and f.received_before == 1767312000.0
    assert limit == 10000
    with pytest.raises(BadRequest):
        parse_filter({"until": "later"}, 10000)


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/records" in spec["paths"]
    for path in ("/v2/collector", "/v3/collector", "/"):
        assert "application/json" in spec["paths"][path]["post"]["requestBody"]["content"]
