"""Pieces of the websocket endpoint that need no server: allow-list, byte rate, labels."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from downlink.settings import Settings
from downlink.sources.substrate.websocket import ByteRate, allowed, message_label, uvicorn_options
from tests.sources.substrate.client import frame


def test_allow_list() -> None:
    everyone = Settings()
    assert allowed(everyone, "203.0.113.9") and allowed(everyone, None)
    some = Settings(sources={"substrate": {
        "ws_allow_networks": ("10.0.0.0/8", "2001:db8::/32", "127.0.0.1")}})
    assert allowed(some, "10.2.3.4") and allowed(some, "2001:db8::1")
    assert allowed(some, "127.0.0.1")
    assert not allowed(some, "127.0.0.2")
    assert not allowed(some, "192.168.1.1")
    assert not allowed(some, None) and not allowed(some, "testclient")


def test_byte_rate_allows_the_budget_and_refuses_beyond() -> None:
    # substrate-telemetry's case: 1000 B/s over 10 s lets 10 x 1000 B through at once.
    exact = ByteRate(1000, 10)
    assert all(exact.take(1000) for _ in range(10))
    short = ByteRate(999, 10)
    assert [short.take(1000) for _ in range(10)].count(False) == 1
    assert ByteRate(0, 10).take(10**9)  # 0 turns the limit off


def test_message_labels_are_bounded() -> None:
    assert message_label("system.interval") == "system.interval"
    assert message_label("afg.received_prevote") == "afg.received_prevote"
    assert message_label("made.up") == "other"
    assert message_label("afg." + "x" * 100) == "other"


def test_uvicorn_options_follow_settings() -> None:
    assert uvicorn_options(Settings()) == {
        "ws_max_size": 1024 * 1024,
        "ws_ping_interval": 5.0,
        "ws_ping_timeout": None,
    }
    strict = Settings(sources={"substrate": {
        "ws_ping_interval_s": 0.0, "ws_pong_timeout_s": 3.0, "ws_max_frame_bytes": 10}})
    assert uvicorn_options(strict) == {
        "ws_max_size": 10,
        "ws_ping_interval": None,
        "ws_ping_timeout": 3.0,
    }


def test_http_on_root_is_still_the_collector(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).status_code == 302
    assert client.post("/", content=b"x").status_code == 400  # a Clear Linux record, refused
    with client.websocket_connect("/") as ws:
        ws.send_text(json.dumps(frame(1, 1)))
        ws.send_text(json.dumps({"downlink_flush": 1}))
        assert ws.receive_json() == {"downlink_flushed": 1, "stored": 1}
