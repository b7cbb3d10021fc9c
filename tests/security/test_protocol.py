"""The guarded uvicorn protocols against real clients on raw sockets.

A live ``downlink serve`` with short timeouts: pipelining clients that read their
answers get all of them, ones that do not are neither buffered without bound nor kept
forever; bodies trickling slower than the request deadline get 408 or are cut off; a
websocket peer that never reads its flush answers is dropped.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from downlink.testing.live import LiveServer
from tests.sources.substrate.client import metric

CLIENT_TIMEOUT = 2.0
REQUEST_TIMEOUT = 3.0
WS_IDLE = 2.0
HEALTH = b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("protocol")
    env = {
        "DOWNLINK_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
        "DOWNLINK_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
        "DOWNLINK_CONNECTION_BUFFER_BYTES": "65536",
        "DOWNLINK_SUBSTRATE_WS_IDLE_TIMEOUT_S": str(WS_IDLE),
        "DOWNLINK_SUBSTRATE_WS_RATE_LIMIT_BYTES": "0",
    }
    live = LiveServer(f"sqlite:///{tmp / 'protocol.db'}", env=env, log=tmp / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _connect(server: LiveServer, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # set before connecting, so that the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Read until the server closes (True) or ``seconds`` pass without it (False)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(1 << 20):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def test_pipelined_requests_that_are_read_all_get_answers(server: LiveServer) -> None:
    count = 300  # far more than are parsed ahead, in one send
    with _connect(server) as sock:
        sock.sendall(HEALTH * count)
        seen = b""
        while seen.count(b"HTTP/1.1 200 OK") < count:
            data = sock.recv(1 << 16)
            assert data, f"closed after {seen.count(b'HTTP/1.1 200 OK')} answers"
            seen += data
        assert seen.count(b"HTTP/1.1 ") == count


def test_keep_alive_answers_larger_than_the_buffer_all_arrive(server: LiveServer) -> None:
    # Each answer (210 KB) overflows the 64 KiB buffer; the next request arrives while
    # the connection is paused, and must still be read once the answer is taken.
    import httpx

    with httpx.Client(timeout=10) as client:
        for _ in range(30):
            resp = client.get(server.url + "/static/vendor/chart-4.6.1.umd.min.js")
            assert resp.status_code == 200 and len(resp.content) > 200_000
            resp = client.post(server.url + "/api/v1/records/bulk", content=b"[]",
                               headers={"Content-Type": "application/json"})
            assert resp.status_code == 200


def _send_without_reading(sock: socket.socket, batch: bytes, seconds: float) -> int:
    """Send ``batch`` again and again for ``seconds`` at most, never reading.

    Stops early once the server has taken nothing for 1 s (it stopped reading).
    """
    sock.setblocking(False)
    sent = 0
    started = taken = time.monotonic()
    while time.monotonic() - started < seconds and time.monotonic() - taken < 1:
        try:
            sent += sock.send(batch)
            taken = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
        except (ConnectionResetError, BrokenPipeError):
            break
    sock.setblocking(True)
    return sent


def test_pipelining_client_that_never_reads_does_not_grow_the_server(
    server: LiveServer,
) -> None:
    assert server.proc is not None
    before = _rss_mib(server.proc.pid)
    with _connect(server, rcvbuf=4096) as sock:
        sent = _send_without_reading(sock, HEALTH * 2000, 6)
        grown = _rss_mib(server.proc.pid) - before
    assert sent > 1_000_000  # tens of thousands of requests were offered
    assert grown < 40, f"server grew by {grown:.0f} MiB for {sent} bytes of requests"


def test_client_that_leaves_large_answers_unread_is_dropped(server: LiveServer) -> None:
    asset = b"GET /static/vendor/chart-4.6.1.umd.min.js HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(server, rcvbuf=4096) as sock:
        _send_without_reading(sock, asset * 100, 3)
        time.sleep(CLIENT_TIMEOUT + 2)  # not reading: reading would let it go on
        assert _closed_within(sock, 3)


@pytest.mark.parametrize("path", [b"/v2/collector", b"/api/v1/records/bulk"])
def test_body_trickling_past_the_request_deadline_gets_408(server: LiveServer, path: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        # One byte a second: well inside the 2 s pause limit, never complete in time.
        for _ in range(20):
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                pass
            if answer:
                break
            time.sleep(0.5)
        took = time.monotonic() - started
        sock.settimeout(5)
        while b"within" not in answer:  # the head and the body may come apart
            try:
                more = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not more:
                break
            answer += more
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"within 3 s" in answer
        assert took < REQUEST_TIMEOUT + 2


def test_unread_body_trickling_after_the_answer_is_cut_off(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /-/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        closed = False
        for _ in range(20):
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.5)
        if not closed:
            closed = _closed_within(sock, 0.1)
        assert closed
        assert time.monotonic() - started < REQUEST_TIMEOUT + 3


def _ws_frame(payload: bytes) -> bytes:
    """One masked text frame, as a client sends it."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def test_websocket_peer_that_never_reads_its_flush_answers_is_dropped(
    server: LiveServer,
) -> None:
    def open_sockets() -> float:
        return metric(server, "downlink_ws_connections", endpoint="/")

    with _connect(server, rcvbuf=4096) as sock:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        # Large tokens come back in every answer: a few fill the buffers of a peer
        # that does not read.
        flush = _ws_frame(json.dumps({"downlink_flush": "t" * 200_000}).encode())
        sock.settimeout(1)
        try:
            for _ in range(40):
                sock.sendall(flush)
        except TimeoutError:
            pass  # the server stopped reading: it is stuck on the answers
        assert open_sockets() == 1
        deadline = time.monotonic() + WS_IDLE + 8
        while open_sockets() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert open_sockets() == 0
