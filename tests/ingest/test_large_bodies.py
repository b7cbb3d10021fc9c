"""Large bodies do not stall the event loop: health checks and small posts stay fast.

A live server receives 8 MB bodies at once, the kinds that used to hold the event loop
for seconds each (a v3 record whose unknown key holds millions of nested arrays, a
bulk array of millions of tiny items, bulk bodies of 10,000 real records), while
``/-/health`` and single small records are timed. Before the bodies were parsed one
level deep (and large ones off the event loop) a health check waited over 5 s here;
the bound is generous (a shared 2-core machine); the numbers are in
``bench/big_bodies.py`` and docs/performance.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from downlink.testing.live import LiveServer
from tests.hardening.records import TID, v3_record

MB8 = 8 * 1024 * 1024 - 4096
JSON = {"Content-Type": "application/json", "X-Telemetry-TID": TID}


def nested_record() -> bytes:
    """A v3 record whose unknown key holds nested arrays, 500 deep, to 8 MB."""
    head = orjson.dumps(v3_record())[:-1] + b',"x":['
    one = b"[" * 500 + b"]" * 500
    return head + b",".join([one] * ((MB8 - len(head)) // (len(one) + 1))) + b"]}"


def tiny_items() -> bytes:
    """A bulk array of millions of empty arrays."""
    return b"[" + b"[]," * (MB8 // 3 - 1) + b"[]]"


def real_records() -> bytes:
    """10,000 valid records in one bulk array, close to 8 MB."""
    return orjson.dumps([v3_record(payload="p" * 350) for _ in range(10_000)])


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose writer queue takes two full bulk bodies at once."""
    server = LiveServer(db_url, env={"DOWNLINK_QUEUE_MAX": "50000"},
                        log=tmp_path / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


def test_health_and_small_posts_stay_fast_while_big_bodies_arrive(live: LiveServer) -> None:
    # The unknown key is ignored, as always: the record itself is valid.
    bodies = [("/v3/collector", nested_record(), 201), ("/v3/collector", nested_record(), 201),
              ("/api/v1/records/bulk", tiny_items(), 413),
              ("/api/v1/records/bulk", real_records(), 200),
              ("/api/v1/records/bulk", real_records(), 200)]
    statuses: list[int] = []

    def post(path: str, body: bytes) -> None:
        with httpx.Client(timeout=120) as c:
            statuses.append(c.post(live.url + path, content=body, headers=JSON).status_code)

    with httpx.Client(timeout=60) as probe:
        probe.get(live.url + "/-/health")
        senders = [threading.Thread(target=post, args=(p, b)) for p, b, _ in bodies]
        for t in senders:
            t.start()
        health: list[float] = []
        small: list[float] = []
        while any(t.is_alive() for t in senders):
            started = time.monotonic()
            assert probe.get(live.url + "/-/health").status_code == 200
            health.append(time.monotonic() - started)
            resp = probe.post(live.url + "/v3/collector", content=orjson.dumps(v3_record()),
                              headers=JSON)
            assert resp.status_code == 201, resp.text
            # A refused record never waits for the writer: its time is the event loop's.
            started = time.monotonic()
            resp = probe.post(live.url + "/v3/collector", headers=JSON,
                              content=orjson.dumps(v3_record(severity="9")))
            assert resp.status_code == 400, resp.text
            small.append(time.monotonic() - started)
            time.sleep(0.02)
        for t in senders:
            t.join()
    assert sorted(statuses) == sorted(expected for _, _, expected in bodies)
    # At least three probes while they arrived (since derived data moved after the ack,
    # the bodies are stored fast enough that five was not always reached).
    assert len(health) >= 3, "the big bodies were too quick to measure anything"
    assert max(health) < 3, f"/-/health took up to {max(health):.2f} s"
    assert max(small) < 3, f"a small post took up to {max(small):.2f} s"
