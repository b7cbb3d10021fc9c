"""Probe services over real HTTP, on SQLite and PostgreSQL (reference A1)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
import orjson
import pytest
import zstandard
from sqlalchemy import create_engine, select, text

from downlink.sources.ooni import fastpath
from downlink.sources.ooni.fingerprints import Fingerprints
from downlink.sources.ooni.tables import fastpath as fastpath_table
from downlink.sources.ooni.tables import measurements
from downlink.store.engine import _normalise
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.ooni.conftest import drain, fixture_measurements, ooni_server

pytestmark = pytest.mark.postgres
UID = re.compile(r"^\d{14}\.\d{6}_[A-Z]{2}_[a-z0-9]+_[0-9a-f]{16}$")


def open_report(url: str, msm: dict[str, Any]) -> str:
    r = httpx.post(url + "/report", json={
        "data_format_version": "0.2.0", "format": "json",
        "probe_asn": msm["probe_asn"], "probe_cc": msm["probe_cc"],
        "software_name": msm.get("software_name", "x"),
        "software_version": msm.get("software_version", "1"),
        "test_name": msm["test_name"], "test_start_time": "2020-01-01 00:00:00",
        "test_version": msm.get("test_version", "0.1"),
    })
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-cache"
    body = r.json()
    assert body["backend_version"] == "1.3.5"
    assert body["supported_formats"] == ["yaml", "json"]
    rid: str = body["report_id"]
    return rid


def rows(db_url: str, table: Any) -> list[dict[str, Any]]:
    engine = create_engine(_normalise(db_url))
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(table)).mappings()]
    finally:
        engine.dispose()


def test_every_fixture_submits_and_is_scored(ooni: LiveServer, fps: Fingerprints) -> None:
    uids = {}
    for name, msm in fixture_measurements().items():
        rid = open_report(ooni.url, msm)
        r = httpx.post(f"{ooni.url}/report/{rid}", json={"format": "json", "content": msm})
        assert r.status_code == 200, (name, r.text)
        uid = r.json()["measurement_uid"]
        assert UID.match(uid), uid
        uids[uid] = (name, rid)
        assert httpx.post(f"{ooni.url}/report/{rid}/close").json() == {}
    logged = {r["measurement_uid"]: r for r in rows(ooni.database_url, measurements)}
    assert set(logged) == set(uids)  # 200 means committed
    for uid, row in logged.items():
        body = orjson.loads(row["body"])
        assert body["is_verified"] == "u"
        assert body["content"] == fixture_measurements()[uids[uid][0]]
    wait_caught_up(ooni.url)  # the fastpath consumer, run by the server
    assert drain(ooni.database_url) == 21  # a replay replaces, never adds
    scored = {r["measurement_uid"]: r for r in rows(ooni.database_url, fastpath_table)}
    assert set(scored) == set(uids)
    for uid, row in scored.items():
        expected = fastpath.build_row(bytes(logged[uid]["body"]), uid, uids[uid][1], fps)
        assert expected is not None
        got = {k: row[k] for k in expected}
        assert got == expected


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_submit_refusals_in_order(ooni: LiveServer) -> None:
    msm = fixture_measurements()["web_connectivity_ir_fp.json"]
    rid = open_report(ooni.url, msm)
    post = httpx.Client(base_url=ooni.url).post
    good = orjson.dumps({"format": "json", "content": msm})

    r = post("/report/not_a_report_id", content=good)
    assert (r.status_code, r.json()) == (400, {"detail": "Incorrect format"})
    r = post("/report/20220815T190043Z_webconnectivity_IR_0_n1_AAAAAAAAAAAAAAAA", content=b"x")
    assert (r.status_code, r.json()) == (200, {})
    r = post("/report/20220815T190043Z_webconnectivity_ZZ_5_n1_AAAAAAAAAAAAAAAA", content=b"x")
    assert (r.status_code, r.json()) == (200, {})
    r = post(f"/report/{rid}", content=b"\x28\xb5\x2f\xfd garbage",
             headers={"Content-Encoding": "zstd"})
    assert (r.status_code, r.json()) == (400, {"detail": "Incorrect format"})
    r = post(f"/report/{rid}", content=good, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415
    for bad in (b"{", b"[]", b'{"format":"json","content":[]}'):
        r = post(f"/report/{rid}", content=bad)
        assert (r.status_code, r.json()) == (400, {"detail": "Incorrect format"})
    other = {**msm, "probe_cc": "IT"}
    r = post(f"/report/{rid}", json={"format": "json", "content": other})
    assert (r.status_code, r.json()) == (400, {"detail": "Inconsistent measurement"})
    rid_bad = open_report(ooni.url, {**msm, "test_name": "x" * 29})
    r = post(f"/report/{rid_bad}", json={"format": "json",
                                         "content": {**msm, "test_name": "x" * 29}})
    assert r.status_code == 200  # 29 chars is allowed
    r = post(f"/report/{rid}", content=zstandard.compress(good),
             headers={"Content-Encoding": "zstd"})
    assert r.status_code == 200 and "measurement_uid" in r.json()
    assert len(rows(ooni.database_url, measurements)) == 2
    metrics = httpx.get(ooni.url + "/metrics").text
    assert 'downlink_ooni_discarded_total{reason="asn_0"} 1.0' in metrics
    assert 'downlink_ooni_discarded_total{reason="cc_zz"} 1.0' in metrics


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_bad_body_metadata(ooni: LiveServer) -> None:
    msm = {**fixture_measurements()["tor.json"], "probe_asn": "AS030722"}
    rid = "20200116T151230Z_tor_IT_030722_n1_AAAAAAAAAAAAAAAA"
    r = httpx.post(f"{ooni.url}/report/{rid}", json={"format": "json", "content": msm})
    assert r.status_code == 400
    assert r.json() == {"detail": {"error": "bad_metadata",
                                   "message": "Errors: [asn_leading_zero]"}}


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_open_report_errors(ooni: LiveServer) -> None:
    r = httpx.post(ooni.url + "/report", content=b"nope")
    assert (r.status_code, r.json()) == (400, {"error": "JSON expected"})
    r = httpx.post(ooni.url + "/report", json={"format": "json"})
    assert r.status_code == 422 and "data_format_version" in r.json()["detail"]


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_other_methods_on_a_report_are_405(ooni: LiveServer) -> None:
    # POST /report/{id} is served past the router; the others still get 405.
    for method in ("GET", "PUT", "DELETE"):
        r = httpx.request(method, ooni.url + "/report/20250101T000000Z_x_IT_1_n1_abc")
        assert r.status_code == 405, method
        assert "POST" in r.headers["allow"]


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_web_connectivity_report_id_is_61_chars(ooni: LiveServer) -> None:
    rid = open_report(ooni.url, {"probe_cc": "IE", "probe_asn": "AS65550",
                                 "test_name": "web_connectivity"})
    assert len(rid) == 61 and "_webconnectivity_IE_65550_n1_" in rid


def test_submit_measurement_single_call(ooni: LiveServer) -> None:
    msm = fixture_measurements()["whatsapp.json"]
    r = httpx.post(ooni.url + "/api/v1/submit_measurement",
                   json={"format": "json", "content": orjson.dumps(msm).decode()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verification_status"] == "u" and body["error"] is None
    assert UID.match(body["measurement_uid"])
    assert "_whatsapp_IE_6830_n1_" in body["report_id"]
    stored = rows(ooni.database_url, measurements)
    assert orjson.loads(stored[0]["body"])["content"]["report_id"] == body["report_id"]
    r = httpx.post(ooni.url + "/api/v1/submit_measurement",
                   json={"format": "json", "content": msm})
    assert r.status_code == 400


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_body_limits(db_url: str, tmp_path: Any) -> None:
    server = ooni_server(db_url, tmp_path / "s.log", env={
        "DOWNLINK_OONI_MAX_BODY_BYTES": "20000",
        "DOWNLINK_OONI_MAX_DECOMPRESSED_BYTES": "100000",
    })
    try:
        msm = fixture_measurements()["tor.json"]
        rid = open_report(server.url, msm)
        big = orjson.dumps({"format": "json", "content": {**msm, "pad": "x" * 30000}})
        r = httpx.post(f"{server.url}/report/{rid}", content=big)
        assert r.status_code == 413
        bomb = zstandard.ZstdCompressor(level=19).compress(b" " * 20_000_000)
        assert len(bomb) < 20000
        r = httpx.post(f"{server.url}/report/{rid}", content=bomb,
                       headers={"Content-Encoding": "zstd"})
        assert r.status_code == 413
        assert rows(db_url, measurements) == []
    finally:
        server.stop()


def test_concurrent_submissions_are_all_committed(ooni: LiveServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    msm = fixture_measurements()["web_connectivity_no_body.json"]
    rid = open_report(ooni.url, msm)
    body = orjson.dumps({"format": "json", "content": msm})

    def post(_i: int) -> str:
        with httpx.Client() as http:
            r = http.post(f"{ooni.url}/report/{rid}", content=body)
            assert r.status_code == 200, r.text
            uid: str = r.json()["measurement_uid"]
            return uid

    with ThreadPoolExecutor(16) as pool:
        uids = list(pool.map(post, range(120)))
    assert len(set(uids)) == 120
    assert {r["measurement_uid"] for r in rows(ooni.database_url, measurements)} == set(uids)


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_submission_paths_stay_open_with_api_tokens(db_url: str, tmp_path: Any) -> None:
    """A probe sends no token: open, submit and close work with tokens configured,
    while the measurements API (not ingest) needs one."""
    server = ooni_server(db_url, tmp_path / "s.log", env={"DOWNLINK_API_TOKENS": "s3cret"})
    try:
        msm = fixture_measurements()["tor.json"]
        rid = open_report(server.url, msm)
        body = {"format": "json", "content": msm}
        r = httpx.post(f"{server.url}/report/{rid}", json=body)
        assert r.status_code == 200 and "measurement_uid" in r.json(), r.text
        r = httpx.post(f"{server.url}/report/{rid}/close")
        assert r.status_code == 200, r.text
        assert len(rows(db_url, measurements)) == 1
        assert httpx.get(f"{server.url}/api/v1/measurements").status_code == 401
    finally:
        server.stop()


def _lz4_expected(db_url: str) -> bool:
    """Whether the database is a PostgreSQL server built with lz4 (migration ooni_0006)."""
    if not db_url.startswith("postgresql"):
        return False
    engine = create_engine(_normalise(db_url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
                " AND 'lz4' = ANY(enumvals)")).first() is not None
    finally:
        engine.dispose()


def test_body_is_stored_as_sent(ooni: LiveServer) -> None:
    """The stored bytes are the body as sent (decompressed), ``is_verified`` added at
    its end, not a re-encoding; the uid hashes those bytes."""
    msm = fixture_measurements()["20250527233111.802678_ID_webconnectivity_5a37ec909dbf14e3.json"]
    rid = open_report(ooni.url, msm)
    content = orjson.dumps(msm, option=orjson.OPT_INDENT_2)
    sent = b'{ "content" : ' + content + b',\n "format": "json" }\n'
    plain = httpx.post(f"{ooni.url}/report/{rid}", content=sent)
    packed = httpx.post(f"{ooni.url}/report/{rid}", content=zstandard.compress(sent),
                        headers={"Content-Encoding": "zstd"})
    assert plain.status_code == packed.status_code == 200
    expected = sent.rstrip()[:-1] + b',"is_verified":"u"}'
    stored = {r["measurement_uid"]: bytes(r["body"]) for r in rows(ooni.database_url,
                                                                    measurements)}
    for answer in (plain, packed):
        uid = answer.json()["measurement_uid"]
        assert stored[uid] == expected
        assert uid.endswith(hashlib.sha512(expected).hexdigest()[:16])
    if ooni.database_url.startswith("postgresql"):
        engine = create_engine(_normalise(ooni.database_url))
        try:
            with engine.connect() as conn:
                method = conn.execute(text(
                    "SELECT DISTINCT pg_column_compression(body) FROM ooni_measurements"
                )).scalars().all()
        finally:
            engine.dispose()
        assert method == (["lz4"] if _lz4_expected(ooni.database_url) else ["pglz"])


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_a_client_gone_mid_body_stores_nothing(db_url: str) -> None:
    """A probe that disconnects before its whole body arrived gets no answer, and
    nothing is stored (the direct endpoint reads ASGI messages itself)."""
    import asyncio

    from downlink.app import create_app
    from downlink.settings import Settings

    msm = fixture_measurements()["tor.json"]
    rid = "20200116T151230Z_tor_IT_30722_n1_AAAAAAAAAAAAAAAA"
    body = orjson.dumps({"format": "json", "content": msm})
    app = create_app(Settings(database_url=db_url, consumer_poll_s=0.0))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            messages = iter([{"type": "http.request", "body": body[:100], "more_body": True},
                             {"type": "http.disconnect"}])

            async def receive() -> dict[str, Any]:
                return next(messages)

            path = f"/report/{rid}"
            await app({"type": "http", "method": "POST", "path": path,
                       "raw_path": path.encode(), "root_path": "", "scheme": "http",
                       "query_string": b"", "http_version": "1.1",
                       "headers": [(b"content-length", str(len(body)).encode())],
                       "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
                       "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    asyncio.run(main())
    assert sent == []
    assert rows(db_url, measurements) == []
    metrics = app.state.store.metrics.registry.get_sample_value(
        "downlink_ooni_submissions_total", {"outcome": "disconnected"})
    assert metrics == 1.0
