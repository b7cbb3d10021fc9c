"""A real server SIGKILLed while records sit in its spool loses none of them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.hardening.records import v2_headers, v3_record
from tests.hardening.test_spool import _stored_payloads


@pytest.mark.slow
def test_sigkill_with_a_full_spool_loses_nothing(tmp_path: Path) -> None:
    pg = TempPostgres(fsync=True).start()
    try:
        url = pg.create_database("killed")
        env = {"DOWNLINK_SPOOL_DIR": str(tmp_path / "spool")}
        server = LiveServer(url, env=env, log=tmp_path / "server.log").start()
        acked = []
        try:
            pg.pause()
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for i in range(30):
                    record = v3_record(payload=f"acked-{i}")
                    resp = client.post("/v2/collector", content=record["payload"],
                                       headers=v2_headers(record))
                    assert resp.status_code == 201, resp.text
                    acked.append(record["payload"])
        finally:
            server.kill()  # SIGKILL with 30 records only in the spool
        pg.resume()
        server = LiveServer(url, env=env, log=tmp_path / "server.log").start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(_stored_payloads(url)) < len(acked):
                time.sleep(0.2)
        finally:
            server.stop()
        assert _stored_payloads(url) == acked
    finally:
        pg.stop()
