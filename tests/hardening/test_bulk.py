"""POST /api/v1/records/bulk: JSON array and NDJSON, per-item results, one write."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from tests.hardening.records import TID, v3_record

URL = "/api/v1/records/bulk"
JSON = {"X-Telemetry-TID": TID, "Content-Type": "application/json"}
NDJSON = {"X-Telemetry-TID": TID, "Content-Type": "application/x-ndjson"}


def test_array_of_records_is_stored_with_results_in_order(client: TestClient) -> None:
    good = [v3_record(payload=f"p{i}") for i in range(3)]
    items = [good[0], {"record_format_version": "4"}, good[1], "text", good[2],
             v3_record(machine_id="x" * 40)]
    resp = client.post(URL, content=orjson.dumps(items), headers=JSON)
    assert resp.status_code == 200
    body = resp.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 3)
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [(0, 201), (1, 400), (2, 201), (3, 400), (4, 201), (5, 400)]
    assert "missing" in body["results"][1]["message"]
    assert body["results"][3]["message"] == "Record must be a JSON object"
    assert body["results"][5]["message"] == "Machine id value is invalid"
    ids = [r["id"] for r in body["results"] if r["status"] == 201]
    assert ids == sorted(ids)
    listed = client.get("/api/records", params={"classification": "org.clearlinux/hello/world"})
    assert sorted(r["payload"] for r in listed.json()["records"]) == ["p0", "p1", "p2"]


def test_ndjson_and_retransmissions(client: TestClient) -> None:
    record = v3_record(payload="once")
    lines = b"\n".join(orjson.dumps(r) for r in (record, record, v3_record())) + b"\n\n"
    first = client.post(URL, content=lines, headers=NDJSON).json()
    assert [r["status"] for r in first["results"]] == [201, 200, 201]
    assert first["results"][0]["id"] == first["results"][1]["id"]
    again = client.post(URL, content=orjson.dumps([record]), headers=JSON).json()
    assert again["results"][0] == {"index": 0, "status": 200, "id": first["results"][0]["id"]}
    assert (again["accepted"], again["duplicates"]) == (0, 1)


def test_whole_request_errors(client: TestClient) -> None:
    assert client.post(URL, content=b"{not json", headers=JSON).status_code == 400
    obj = client.post(URL, content=b'{"a": 1}', headers=JSON)
    assert obj.status_code == 400 and "array" in obj.json()["message"]
    bad_line = client.post(URL, content=b"nope\n", headers=NDJSON).json()
    assert bad_line["results"][0]["status"] == 400
    empty = client.post(URL, content=b"[]", headers=JSON).json()
    assert empty == {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}


def test_telemetry_id_comes_from_the_header(client: TestClient) -> None:
    resp = client.post(URL, content=orjson.dumps([v3_record()]),
                       headers={"Content-Type": "application/json"}).json()
    assert resp["results"][0] == {"index": 0, "status": 400, "message": "Telemetry ID mismatch"}


def test_item_count_limit(client: TestClient) -> None:
    limit = client.app.state.settings.bulk_max_items  # type: ignore[attr-defined]
    items = b"[" + b",".join([b"1"] * (limit + 1)) + b"]"
    resp = client.post(URL, content=items, headers=JSON)
    assert resp.status_code == 413


def test_documented_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"][URL]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array"
    assert "machine_id" in schema["items"]["properties"]
    assert "application/x-ndjson" in post["requestBody"]["content"]
    result = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert result["properties"]["results"]["items"]["required"] == ["index", "status"]
