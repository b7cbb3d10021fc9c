"""/-/health tells a load balancer the truth during an outage, and keeps details private.

Real servers, real outages: PostgreSQL is stopped under a running ``downlink serve``
without a spool (503), with a spool that has room (200: the outage is absorbed) and
with a spool that fills (503). HEAD answers like GET. The database error (which names
the host and port) is shown to API token holders only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.hardening.records import v2_headers, v3_record

TOKEN = "health-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def own_postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL cluster this test may stop and start."""
    pg = TempPostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


def _serve(url: str, tmp_path: Path, **env: str) -> LiveServer:
    return LiveServer(url, env={"DOWNLINK_API_TOKENS": TOKEN, **env},
                      log=tmp_path / "server.log").start()


def _health(client: httpx.Client, **headers: str) -> tuple[int, dict[str, Any]]:
    got = client.get("/-/health", headers=headers)
    head = client.head("/-/health", headers=headers)
    assert head.status_code == got.status_code and head.content == b""
    assert got.headers["cache-control"] == "no-store"
    body: dict[str, Any] = got.json()
    assert body["ok"] is (got.status_code == 200)
    return got.status_code, body


def _post(client: httpx.Client, payload: str = "x") -> httpx.Response:
    record = v3_record(payload=payload)
    return client.post("/v2/collector", content=record["payload"], headers=v2_headers(record))


def test_healthy_server_answers_200_to_get_and_head(db_url: str, tmp_path: Path) -> None:
    server = _serve(db_url, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            status, body = _health(client)
            assert status == 200
            assert body == {"ok": True, "database": db_url.split(":")[0].split("+")[0],
                            "database_ok": True, "writer_queue": 0, "spool_state": "off"}
            assert _health(client, **AUTH) == (200, body)  # nothing to add while healthy
    finally:
        server.stop()


def test_outage_without_spool_is_503_with_details_for_token_holders(
    own_postgres: TempPostgres, tmp_path: Path
) -> None:
    server = _serve(own_postgres.create_database("nospool"), tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            own_postgres.pause()
            try:
                status, public = _health(client)
                assert status == 503
                assert public == {"ok": False, "database": "postgresql", "database_ok": False,
                                  "writer_queue": 0, "spool_state": "off"}
                raw = client.get("/-/health").text
                assert str(own_postgres.port) not in raw and "127.0.0.1" not in raw
                status, private = _health(client, **AUTH)
                assert status == 503 and str(own_postgres.port) in private["error"]
                wrong = _health(client, Authorization="Bearer wrong")
                assert wrong == (503, public)
            finally:
                own_postgres.resume()
            assert _health(client)[0] == 200
    finally:
        server.stop()


def test_outage_absorbed_by_the_spool_is_200_until_it_is_full(
    own_postgres: TempPostgres, tmp_path: Path
) -> None:
    url = own_postgres.create_database("spooled")
    server = _serve(url, tmp_path, DOWNLINK_SPOOL_DIR=str(tmp_path / "spool"),
                    DOWNLINK_SPOOL_MAX_BYTES="4000")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert _health(client)[1]["spool_state"] == "empty"
            own_postgres.pause()
            try:
                status, body = _health(client)
                assert (status, body["database_ok"], body["spool_state"]) == (200, False, "empty")
                assert _post(client).status_code == 201  # spooled
                status, body = _health(client)
                assert (status, body["spool_state"]) == (200, "holding")
                assert "error" not in body and "spool" not in body
                status, body = _health(client, **AUTH)
                assert body["spool"] == {"pending": 1, "set_aside": 0}
                assert str(own_postgres.port) in body["error"]
                codes = [_post(client, "y" * 400).status_code for _ in range(12)]
                assert codes[-1] == 503  # the spool is full: the collector refuses
                status, body = _health(client)
                assert (status, body["spool_state"]) == (503, "full")
            finally:
                own_postgres.resume()
            # The drainer empties the spool into the database; healthy again.
            for _ in range(100):
                status, body = _health(client)
                if status == 200 and body["spool_state"] == "empty":
                    break
                time.sleep(0.1)
            assert (status, body["database_ok"], body["spool_state"]) == (200, True, "empty")
    finally:
        server.stop()
