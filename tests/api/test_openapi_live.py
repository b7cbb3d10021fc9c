"""What /openapi.json promises is what a live server does (both databases).

The fuzzer (test_openapi_fuzz.py) explores; these pin the cases the issue found: error
answers declared with the ``{"message"}`` schema, ``Allow`` on a path served by two
routes, GET on the collector paths, bulk items without a payload, and an unreachable
database answering 503 instead of 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.hardening.records import TID, v3_record

MESSAGE = {"$ref": "#/components/schemas/Message"}


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_errors_are_declared_with_the_message_schema(live: LiveServer) -> None:
    spec = httpx.get(live.url + "/openapi.json", timeout=10).json()
    assert spec["components"]["schemas"]["Message"]["required"] == ["message"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        # Refusals are 400s, but OONI's lookups by report_id answer 422 as OONI does.
        ooni_lookup = path in ("/api/v1/raw_measurement", "/api/v1/measurement_meta")
        assert ("422" not in responses) or ooni_lookup, (method, path)
        if operation.get("parameters") or "requestBody" in operation:
            assert "400" in responses, (method, path)
        for status, answer in responses.items():
            if status[0] in "45":
                assert answer["content"]["application/json"]["schema"] == MESSAGE, (
                    method, path, status)
    paths = spec["paths"]
    assert "404" in paths["/api/records/{record_id}"]["get"]["responses"]
    assert "302" in paths["/v2/collector"]["get"]["responses"]
    item = paths["/api/v1/records/bulk"]["post"]["requestBody"]["content"]["application/json"]
    assert "payload" in item["schema"]["items"]["required"]


def test_the_server_does_what_the_document_says(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        # One path, two routes: the 405 names the methods of both.
        options = client.options("/benchmarks")
        assert options.status_code == 405
        assert options.headers["allow"] == "GET, POST"
        assert options.json()["message"]
        # GET on a collector path is the documented redirect.
        for path in ("/v2/collector", "/v3/collector", "/"):
            got = client.get(path)
            assert (got.status_code, got.headers["location"]) == (302, "/records"), path
        # A record without a payload is refused, alone and in a bulk request.
        record = v3_record()
        del record["payload"]
        alone = client.post("/v3/collector", json=record, headers={"X-Telemetry-TID": TID})
        assert (alone.status_code, alone.json()) == (400, {"message": "payload is missing"})
        bulk = client.post("/api/v1/records/bulk", json=[record, v3_record()],
                           headers={"X-Telemetry-TID": TID})
        results = bulk.json()["results"]
        assert results[0] == {"index": 0, "status": 400, "message": "payload is missing"}
        assert results[1]["status"] == 201
        # Path ids out of range are the documented 400, missing ones the documented 404.
        assert client.get("/api/records/0").status_code == 400
        assert client.get("/api/records/42").status_code == 404
        # A missing required parameter is named.
        missing = client.get("/nodes/logs")
        assert (missing.status_code, missing.json()) == (400, {"message": "peer_id is required"})


def test_an_unreachable_database_is_503_not_500(tmp_path: Path) -> None:
    pg = TempPostgres().start()
    try:
        server = LiveServer(pg.create_database("outage"), log=tmp_path / "server.log").start()
        try:
            pg.pause()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for path in ("/api/records", "/api/records/1", "/nodes", "/records.json",
                             "/stats.json"):
                    resp = client.get(path)
                    assert resp.status_code == 503, (path, resp.text)
                    assert resp.headers["retry-after"]
                    assert resp.json() == {"message": "The database is unavailable, retry later"}
                    assert str(pg.port) not in resp.text
        finally:
            server.stop()
    finally:
        pg.stop()


