"""Parameters the database or Python's int() would choke on get a 4xx with a message.

Over real HTTP against a live server, on SQLite and PostgreSQL: integers past Python's
4,300-digit conversion limit (query parameters and record fields in headers, JSON and
bulk), ids outside 1..2^63-1 in paths, NUL in text filters (PostgreSQL refuses it in a
comparison), and wildcard patterns with a trailing backslash (PostgreSQL's LIKE refused
them) or other LIKE metacharacters, which now match themselves.
"""

from __future__ import annotations

import httpx

from downlink.testing.live import LiveServer
from tests.hardening.records import TID, v2_headers, v3_record

HUGE = "9" * 5000  # past int()'s 4,300-digit limit
BIG_ID = str(2**63)  # one past PostgreSQL's bigint and SQLite's integer

REFUSED_GETS = [
    # Huge integers in query parameters, JSON API and pages alike.
    f"/api/records?severity={HUGE}",
    f"/api/records?limit={HUGE}",
    f"/api/records?from_id={HUGE}",
    f"/api/records?before_id={BIG_ID}",
    f"/api/records?created_in_days={HUGE}",
    f"/crashes?limit={HUGE}",
    f"/crashes.json?limit={HUGE}",
    f"/mce?top={HUGE}",
    f"/mce.json?top={HUGE}",
    f"/substrate?minutes={HUGE}",
    f"/substrate.json?minutes={HUGE}",
    f"/records.json?before={HUGE}",
    f"/records?severity={HUGE}",
    f"/stats.json?severity={HUGE}",
    f"/builds.json?severity={HUGE}",
    f"/nodes/logs?peer_id=p&limit={HUGE}",
    f"/benchmarks?limit={HUGE}",
    f"/reputation?max_age_s={HUGE}",
    "/api/records?severity=%C2%B2",  # "²": str.isdigit() says yes, int() says no
    # Ids outside 1..2^63-1 in paths.
    *(
        f"{path}/{bad}{suffix}"
        for bad in (BIG_ID, "-1", "0", HUGE)
        for path, suffix in (
            ("/api/records", ""),
            ("/records", ""),
            ("/records", ".json"),
            ("/crashes", ""),
            ("/crashes", ".json"),
            ("/crashes", "/backtraces"),
            ("/crashes", "/backtraces.json"),
        )
    ),
    # NUL (and other control characters) in text filters.
    "/api/records?machine_id=%00",
    "/api/records?source=%00",
    "/api/records?classification=a/b/c%00",
    "/api/records?classification=a/b/%2A%00",
    "/api/records?machine_id=a%0Ab",
    "/records.json?machine_id=%00",
    "/records.json?source=%00",
    "/records.json?classification=a%00",
    "/stats.json?source=%00",
    "/stats.json?classification=%00",
    "/builds.json?platform=%00",
    "/nodes/logs?peer_id=%00",
    "/reputation/%00",
    "/plugins/severity.json?classification=%00",  # plug-ins get plain text only
    "/plugins/severity?anything=a%01b",
]


def _is_message(resp: httpx.Response) -> bool:
    """A JSON ``{"message": ...}``, or a page showing the message in its error block."""
    if resp.headers.get("content-type", "").startswith("text/html"):
        return '<p class="error" id="error" role="alert">' in resp.text
    body = resp.json()
    return isinstance(body, dict) and isinstance(body.get("message"), str) and bool(body["message"])


def test_hostile_query_and_path_parameters_get_4xx(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for path in REFUSED_GETS:
            resp = client.get(path)
            assert resp.status_code in (400, 404), (path[:80], resp.status_code, resp.text[:200])
            assert _is_message(resp), path[:80]
        # An id in range that nothing has is a plain 404.
        for path in ("/api/records/9223372036854775807", "/records/123.json", "/crashes/7.json"):
            resp = client.get(path)
            assert resp.status_code == 404 and _is_message(resp), (path, resp.text)


def test_huge_integers_in_records_are_refused_by_field(live: LiveServer) -> None:
    fields = {
        "severity": "severity value is out of range",
        "record_format_version": "Record-Format-Version is invalid",
        "payload_format_version": "Payload format version outside of range supported",
        "creation_timestamp": "timestamp is invalid",
    }
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for field, message in fields.items():
            record = v3_record(**{field: HUGE})
            v2 = client.post("/v2/collector", content=record["payload"],
                             headers=v2_headers(record))
            assert (v2.status_code, v2.json()) == (400, {"message": message}), field
            v3 = client.post("/v3/collector", json=record, headers={"X-Telemetry-TID": TID})
            assert (v3.status_code, v3.json()) == (400, {"message": message}), field
            bulk = client.post("/api/v1/records/bulk", json=[record, v3_record()],
                               headers={"X-Telemetry-TID": TID})
            assert bulk.status_code == 200, bulk.text
            results = bulk.json()["results"]
            assert results[0] == {"index": 0, "status": 400, "message": message}
            assert results[1]["status"] == 201
        # Leading zeros are still a small number, as int() reads them.
        ok = client.post("/v3/collector", json=v3_record(severity="0" * 5000 + "2"),
                         headers={"X-Telemetry-TID": TID})
        assert ok.status_code == 201 and ok.json()["severity"] == 2, ok.text


def test_wildcards_escape_like_metacharacters(live: LiveServer) -> None:
    classes = ["t/x_y/back\\", "t/xzy/back\\", "t/100%/z", "t/100a/z"]
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for cls in classes:
            resp = client.post("/v3/collector", json=v3_record(classification=cls),
                               headers={"X-Telemetry-TID": TID})
            assert resp.status_code == 201, resp.text

        def api(pattern: str) -> list[str]:
            resp = client.get("/api/records", params={"classification": pattern})
            assert resp.status_code == 200, (pattern, resp.text)
            return sorted(r["classification"] for r in resp.json()["records"])

        def page(pattern: str) -> list[str]:
            resp = client.get("/records.json", params={"classification": pattern})
            assert resp.status_code == 200, (pattern, resp.text)
            return sorted(r["classification"] for r in resp.json()["records"])

        def stats(pattern: str) -> list[str]:
            resp = client.get("/stats.json", params={"classification": pattern})
            assert resp.status_code == 200, (pattern, resp.text)
            return sorted(c["classification"] for c in resp.json()["classifications"])

        for ask in (api, page, stats):
            assert ask("t/*/back\\") == ["t/x_y/back\\", "t/xzy/back\\"], ask
            assert ask("t/x_y/*") == ["t/x_y/back\\"], ask  # "_" is not a wildcard
            assert ask("t/*/*\\") == ["t/x_y/back\\", "t/xzy/back\\"], ask
            assert ask("t/100%/*") == ["t/100%/z", "t/100a/z"], ask  # "%" is one
            assert ask("t/*/z\\") == [], ask
