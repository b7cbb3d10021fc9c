"""API tokens, open-by-default behaviour and per-address rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from downlink.app import create_app
from downlink.security.ratelimit import TokenBuckets
from downlink.settings import Settings, from_env
from tests.hardening.records import TID, v2_headers, v3_record

BEARER = {"Authorization": "Bearer s3cret"}


def _client(tmp_path: Path, **settings: object) -> TestClient:
    s = Settings(database_url=f"sqlite:///{tmp_path / 'sec.db'}", batch_wait_ms=1.0,
                 **settings)  # type: ignore[arg-type]
    return TestClient(create_app(s), raise_server_exceptions=False)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path, api_tokens=("s3cret", "other")) as c:
        yield c


def _post_v2(client: TestClient, headers: dict[str, str] | None = None) -> int:
    record = v3_record()
    return client.post("/v2/collector", content=record["payload"],
                       headers={**v2_headers(record), **(headers or {})}).status_code


def test_everything_is_open_without_tokens(client: TestClient) -> None:
    assert _post_v2(client) == 201
    assert client.get("/api/records").status_code == 200
    assert client.get("/-/settings").status_code == 200


def test_query_api_needs_a_token(guarded: TestClient) -> None:
    assert guarded.get("/api/records").status_code == 401
    bad = guarded.get("/api/records", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["message"].startswith("A valid API token")
    assert bad.headers["www-authenticate"].startswith("Bearer")
    assert guarded.get("/api/records", headers={"Authorization": "Basic s3cret"}).status_code \
        == 401
    assert guarded.get("/api/records", headers=BEARER).status_code == 200
    assert guarded.get("/api/records", headers={"Authorization": "bearer other"}).status_code \
        == 200


def test_admin_paths_need_a_token_and_hide_tokens(guarded: TestClient) -> None:
    assert guarded.get("/-/settings").status_code == 401
    assert guarded.get("/metrics").status_code == 401
    shown = guarded.get("/-/settings", headers=BEARER).json()
    assert "s3cret" not in orjson.dumps(shown).decode()
    assert shown["api_tokens"] == ["***", "***"]


def test_probes_and_docs_stay_open(guarded: TestClient) -> None:
    assert guarded.get("/-/health").status_code == 200
    assert guarded.get("/openapi.json").status_code == 200


def test_collector_open_by_default_with_tokens(guarded: TestClient) -> None:
    assert _post_v2(guarded) == 201
    bulk = guarded.post("/api/v1/records/bulk", content=orjson.dumps([v3_record()]),
                        headers={"X-Telemetry-TID": TID, "Content-Type": "application/json"})
    assert bulk.status_code == 200


def test_collector_token_protected_by_setting(tmp_path: Path) -> None:
    with _client(tmp_path, api_tokens=("s3cret",), collector_auth=True) as c:
        assert _post_v2(c) == 401
        assert _post_v2(c, BEARER) == 201
        body = orjson.dumps([v3_record()])
        headers = {"X-Telemetry-TID": TID, "Content-Type": "application/json"}
        assert c.post("/api/v1/records/bulk", content=body, headers=headers).status_code == 401
        assert c.post("/api/v1/records/bulk", content=body,
                      headers={**headers, **BEARER}).status_code == 200


def test_rate_limit_per_address(tmp_path: Path) -> None:
    with _client(tmp_path, rate_limit=0.5, rate_burst=3) as c:
        codes = [c.get("/api/records?limit=1").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200]
        assert codes[3:] == [429, 429]
        refused = c.get("/api/records?limit=1")
        assert refused.json()["message"].startswith("Too many requests")
        assert int(refused.headers["retry-after"]) >= 1
        assert c.get("/-/health").status_code == 200  # probes are not limited


def test_collector_direct_route_shares_the_rate_limit(tmp_path: Path) -> None:
    # Collector posts skip the middleware stack (downlink.direct) but not its checks:
    # they take tokens from the same per-address bucket as every other request.
    with _client(tmp_path, rate_limit=0.5, rate_burst=3) as c:
        assert _post_v2(c) == 201
        assert c.get("/api/records?limit=1").status_code == 200
        assert _post_v2(c) == 201
        record = v3_record()
        refused = c.post("/v2/collector", content=record["payload"], headers=v2_headers(record))
        assert refused.status_code == 429
        assert refused.json()["message"].startswith("Too many requests")
        assert c.get("/api/records?limit=1").status_code == 429


def test_token_buckets_refill_and_stay_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, max_keys=3, clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("b") == 0  # another address has its own bucket
    for key in ("c", "d", "e", "f"):
        buckets.take(key)
    assert len(buckets) == 3
    # The least recently seen key is forgotten first: "d" taken again outlives "e".
    buckets.take("d")
    buckets.take("g")
    assert set(buckets._buckets) == {"f", "d", "g"}
    # A key may be any hashable value (the sender guard's are (source, id) pairs).
    assert buckets.take(("clearlinux", "m")) == 0


def test_settings_from_environment() -> None:
    s = from_env({"DOWNLINK_API_TOKENS": "a, b", "DOWNLINK_COLLECTOR_AUTH": "true",
                  "DOWNLINK_RATE_LIMIT": "2.5", "DOWNLINK_RATE_BURST": "7"})
    assert s.api_tokens == ("a", "b")
    assert s.collector_auth is True
    assert s.rate_limit == 2.5 and s.rate_burst == 7


def test_websocket_ingest_stays_open_and_others_need_tokens() -> None:
    from downlink.security.paths import is_ingest

    assert is_ingest("WEBSOCKET", "/") and is_ingest("WEBSOCKET", "/audit")
    assert not is_ingest("WEBSOCKET", "/api/records")
    assert not is_ingest("GET", "/v2/collector")


@pytest.mark.parametrize("bad", [
    {"DOWNLINK_RATE_BURST": "0"},
    {"DOWNLINK_CLIENT_TIMEOUT": "0"},
    {"DOWNLINK_MAX_HEADER_BYTES": "10"},
    {"DOWNLINK_SPOOL_MAX_BYTES": "0"},
    {"DOWNLINK_COLLECTOR_AUTH": "true"},
])
def test_unusable_hardening_settings_fail_loudly(bad: dict[str, str]) -> None:
    from downlink.settings import SettingsError

    with pytest.raises(SettingsError):
        from_env(bad)
