"""With several worker processes, one scrape of /metrics counts every worker's records."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from downlink.testing.live import LiveServer
from tests.wire import v2_headers


def _accepted(text: str) -> float:
    found = re.search(r'^downlink_records_accepted_total\{source="clearlinux"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_sum_all_workers(tmp_path: Path) -> None:
    server = LiveServer(f"sqlite:///{tmp_path / 'w.db'}", workers=2, log=tmp_path / "log")
    server.start(timeout=60)
    try:
        for _ in range(40):
            # A new connection per record, so the kernel spreads them over both workers.
            with httpx.Client(base_url=server.url) as client:
                answer = client.post("/v2/collector", content=b"hi", headers=v2_headers())
                assert answer.status_code == 201
        for _ in range(4):  # whichever worker answers the scrape
            with httpx.Client(base_url=server.url) as client:
                text = client.get("/metrics").text
            assert _accepted(text) == 40.0
            assert "downlink_writer_queue_records" in text
    finally:
        server.stop()
