"""Hostile input: generated requests to every ingest and query endpoint never get a 500.

Hypothesis drives the collector (v2 headers and v3 JSON, arbitrary bytes), the bulk
endpoint and every GET operation of the OpenAPI document with arbitrary parameter
values. Each request must answer below 500 with a JSON ``message`` on refusal; the
server must still answer afterwards (no hang: the TestClient call returns).
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from downlink.sources.clearlinux.wire import FIELDS
from tests.hardening.records import TID, v2_headers, v3_record

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
ANY_TEXT = st.text(max_size=80)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
FIELD_NAMES = [key for key, _ in FIELDS]


def _dumps(value: Any) -> bytes:
    """JSON that orjson would refuse to write too: huge integers, lone surrogates."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _refused_cleanly(resp: Any) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400 and resp.headers.get("content-type", "").startswith(
        "application/json"
    ):
        assert "message" in resp.json() or "detail" not in resp.json()


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELD_NAMES), HEADER_TEXT, max_size=5),
       dropped=st.sets(st.sampled_from(FIELD_NAMES), max_size=3),
       body=st.binary(max_size=300))
def test_collector_v2_headers(client: TestClient, changes: dict[str, str], dropped: set[str],
                              body: bytes) -> None:
    headers = {**v2_headers(v3_record()), **changes}
    for key in dropped:
        headers.pop(key, None)
    resp = client.post("/v2/collector", content=body, headers=headers)
    _refused_cleanly(resp)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from([*FIELD_NAMES, "payload"]), JSON_VALUE,
                               max_size=5),
       extra=st.dictionaries(ANY_TEXT, JSON_VALUE, max_size=3))
def test_collector_v3_json(client: TestClient, changes: dict[str, Any],
                           extra: dict[str, Any]) -> None:
    record = {**v3_record(), **extra, **changes}
    resp = client.post("/v3/collector", content=_dumps(record),
                       headers={"Content-Type": "application/json", "X-Telemetry-TID": TID})
    _refused_cleanly(resp)


@FUZZ
@given(body=st.binary(max_size=500),
       ctype=st.sampled_from(["application/json", "application/text", "text/plain",
                              "application/x-www-form-urlencoded", "multipart/form-data",
                              "application/x-ndjson", ""]),
       path=st.sampled_from(["/", "/v2/collector", "/v3/collector", "/api/v1/records/bulk"]))
def test_arbitrary_bodies(client: TestClient, body: bytes, ctype: str, path: str) -> None:
    resp = client.post(path, content=body,
                       headers={"Content-Type": ctype, "X-Telemetry-TID": TID})
    _refused_cleanly(resp)


@FUZZ
@given(items=st.lists(st.one_of(JSON_VALUE, st.builds(v3_record, payload=ANY_TEXT)),
                      max_size=6))
def test_bulk_items(client: TestClient, items: list[Any]) -> None:
    resp = client.post("/api/v1/records/bulk", content=_dumps(items),
                       headers={"Content-Type": "application/json", "X-Telemetry-TID": TID})
    _refused_cleanly(resp)
    if resp.status_code == 200:  # 400 only when the array itself is not JSON orjson reads
        assert [r["index"] for r in resp.json()["results"]] == list(range(len(items)))


def _get_operations(client: TestClient) -> list[tuple[str, list[str]]]:
    spec = client.get("/openapi.json").json()
    ops = []
    for path, item in spec["paths"].items():
        get = item.get("get")
        if get is None:
            continue
        names = [p["name"] for p in get.get("parameters", []) if p.get("in") == "query"]
        ops.append((path, names))
    return ops


PARAM_VALUE = st.one_of(
    st.text(alphabet=string.printable, max_size=30),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", "0", "-1", "1e309", "NaN", "9" * 40, "%00", "'; DROP TABLE records;--",
                     "2026-13-45", "csv", "ndjson", "json"]),
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_get_endpoint(client: TestClient, data: st.DataObject) -> None:
    ops = _get_operations(client)
    path, names = data.draw(st.sampled_from(ops))
    concrete = path
    while "{" in concrete:
        start, end = concrete.index("{"), concrete.index("}")
        value = data.draw(st.text(alphabet=string.ascii_letters + string.digits + "-._",
                                  min_size=1, max_size=20))
        concrete = concrete[:start] + value + concrete[end + 1:]
    params = data.draw(st.dictionaries(st.sampled_from(names), PARAM_VALUE, max_size=4)
                       if names else st.just({}))
    resp = client.get(concrete, params=params)
    _refused_cleanly(resp)
