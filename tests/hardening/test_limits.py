"""Oversized requests are refused early and slow clients are cut off, on a real server.

These talk raw HTTP over a socket to ``downlink serve`` (the uvicorn protocol with the
header guards and the request-limit middleware), with small limits and a 1 s client
timeout so each case finishes quickly.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from downlink.testing.live import LiveServer

TIMEOUT = 1.0
MAX_BODY = 100_000
MAX_HEADERS = 8192


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("limits")
    env = {"DOWNLINK_CLIENT_TIMEOUT": str(TIMEOUT), "DOWNLINK_MAX_BODY_BYTES": str(MAX_BODY),
           "DOWNLINK_MAX_HEADER_BYTES": str(MAX_HEADERS)}
    live = LiveServer(f"sqlite:///{tmp / 'limits.db'}", env=env, log=tmp / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def test_declared_oversized_body_is_refused_before_it_is_sent(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /v2/collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/text"
                     b"\r\nContent-Length: 1000000000\r\n\r\n")
        started = time.monotonic()
        raw = _read_all(sock)
        assert _status(raw) == 413
        assert b"larger than the limit" in raw
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("path", [b"/api/v1/records/bulk", b"/v2/collector"])
def test_chunked_body_growing_past_the_limit_is_refused(server: LiveServer, path: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b" " * 30_000
        try:
            for _ in range(10):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _status(sock.recv(65536)) == 413


def test_huge_headers_get_431_early(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /api/records HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(200):  # 200 x 10 KiB of headers, never finished
                sock.sendall(b"X-Filler-%d: %s\r\n" % (i, b"a" * 10240))
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = _read_all(sock)
        assert _status(raw) == 431


def test_headers_over_the_setting_get_431(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /api/records HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (MAX_HEADERS + 100)
                     + b"\r\nConnection: close\r\n\r\n")
        raw = _read_all(sock)
        assert _status(raw) == 431
        assert b'"message"' in raw


def test_idle_connection_is_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - started < TIMEOUT + 3


def test_slowloris_headers_are_cut_off(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /v2/collector HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        for i in range(40):  # one header byte every 0.1 s, for at most 4 s
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        if not closed:
            closed = _read_all(sock) == b""
        assert closed
        assert time.monotonic() - started < TIMEOUT + 3


def test_slow_body_gets_408(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /v2/collector HTTP/1.1\r\nHost: x\r\nContent-Type: application/text"
                     b"\r\nContent-Length: 100\r\n\r\nhello")
        started = time.monotonic()
        raw = _read_all(sock)
        assert _status(raw) == 408
        assert time.monotonic() - started < TIMEOUT + 3


def test_bad_content_length_is_400(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /api/v1/records/bulk HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: -5\r\nConnection: close\r\n\r\n")
        assert _status(_read_all(sock)) == 400


def test_server_still_answers_after_the_abuse(server: LiveServer) -> None:
    import httpx

    assert httpx.get(server.url + "/-/health", timeout=5).status_code == 200
