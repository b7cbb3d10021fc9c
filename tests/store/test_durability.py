"""SIGKILL during a concurrent load loses no record that was answered 201."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from downlink.testing.live import LiveServer
from tests.wire import v2_headers


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_acknowledged_record(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, workers=2, log=tmp_path / "server.log").start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def post_forever() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while not stop.is_set():
                headers = v2_headers()
                try:
                    r = http.post("/v2/collector", headers=headers, content=b"load\n")
                except httpx.HTTPError:
                    return  # the server died under us: this record was never acknowledged
                if r.status_code == 201:
                    with lock:
                        acked.append(headers["event_id"])

    threads = [threading.Thread(target=post_forever) for _ in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(acked) < 400:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 50, "the load never got going"

    restarted = LiveServer(db_url, log=tmp_path / "server2.log").start()
    try:
        stored: set[str] = set()
        cursor = None
        while True:
            params = {"limit": "10000"} | ({"before_id": str(cursor)} if cursor else {})
            page = httpx.get(restarted.url + "/api/records", params=params).json()
            stored.update(r["event_id"] for r in page["records"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged records lost of {len(acked)}"
    finally:
        restarted.stop()
