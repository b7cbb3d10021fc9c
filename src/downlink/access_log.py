"""The access log: one line per HTTP request, off, plain text or JSON lines.

``DOWNLINK_ACCESS_LOG`` picks the format (``off`` by default: at thousands of
collector posts a second a line per record costs more than the record). Lines go to
standard output through the ``downlink.access`` logger, so systemd's journal or a
container runtime collects them; with several workers each process writes its own
lines. The line is written when the response is complete, with the status, the body
bytes sent and the time taken. Client addresses are the ones uvicorn settles on
(``FORWARDED_ALLOW_IPS`` decides whether a proxy's ``X-Forwarded-For`` counts).

plain::

    2026-11-30T13:40:01.123Z 127.0.0.1 "GET /records?build=31000 HTTP/1.1" 200 5123 4.2ms

json (one object per line)::

    {"ts": "2026-11-30T13:40:01.123Z", "client": "127.0.0.1", "method": "GET",
     "path": "/records", "query": "build=31000", "http": "1.1", "status": 200,
     "bytes": 5123, "ms": 4.2, "user_agent": "curl/8.5.0"}
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORMATS = ("off", "plain", "json")
LOGGER = "downlink.access"


def access_logger() -> logging.Logger:
    """The ``downlink.access`` logger, writing bare lines to standard output."""
    log = logging.getLogger(LOGGER)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _safe(raw: bytes) -> str:
    """``raw`` as text with control characters, quotes and backslashes %-escaped.

    A request line or header cannot forge a log line or break the plain format's quotes.
    """
    return "".join(
        f"%{b:02X}" if b < 0x20 or b >= 0x7F or b in (0x22, 0x5C) else chr(b) for b in raw
    )


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return _safe(bytes(value))
    return ""


class AccessLog:
    """Runs a request through ``app`` and logs it once the response is complete."""

    def __init__(self, fmt: str, logger: logging.Logger | None = None) -> None:
        if fmt not in FORMATS or fmt == "off":
            raise ValueError(f"access log format must be plain or json, not {fmt!r}")
        self.json = fmt == "json"
        self.logger = logger or access_logger()

    async def __call__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request with ``app`` and write its line."""
        start = time.perf_counter()
        status = 0
        size = 0

        async def counting(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, counting)
        finally:
            # A request that failed before answering is logged as the 500 uvicorn sends.
            self.write(scope, status or 500, size, time.perf_counter() - start)

    def write(self, scope: Scope, status: int, size: int, seconds: float) -> None:
        """Write the line of one finished request."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        client = scope.get("client")
        host = str(client[0]) if client else "-"
        query = _safe(bytes(scope.get("query_string", b"")))
        raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode()
        ms = round(seconds * 1000, 1)
        item: dict[str, Any] = {
            "ts": now,
            "client": host,
            "method": _safe(str(scope.get("method", "")).encode()),
            "path": _safe(bytes(raw_path)),
            "query": query,
            "http": scope.get("http_version", "1.1"),
            "status": status,
            "bytes": size,
            "ms": ms,
            "user_agent": _header(scope, b"user-agent"),
        }
        if self.json:
            self.logger.info(orjson.dumps(item).decode())
            return
        target = item["path"] + (f"?{query}" if query else "")
        self.logger.info(
            '%s %s "%s %s HTTP/%s" %d %d %.1fms',
            now, host, item["method"], target, item["http"], status, size, ms,
        )
