"""The HTTP protocol ``downlink serve`` runs: uvicorn's httptools protocol plus guards.

uvicorn reads request headers without a size or time limit; a client can hold a
connection open by sending one header byte every few seconds (slowloris) or send
megabytes of headers. This subclass adds two limits while a request head is arriving:

* it must be complete within ``DOWNLINK_CLIENT_TIMEOUT`` seconds of its first byte (or
  of the connection opening), otherwise the connection is closed;
* it may not exceed ``DOWNLINK_MAX_HEADER_BYTES`` (plus the request line), otherwise
  the client gets 431 and the connection is closed, before the rest is buffered.

Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from downlink.settings import from_env


class _HeadTooLarge(Exception):
    pass


@lru_cache(maxsize=1)
def _limits() -> tuple[float, int]:
    settings = from_env()
    return settings.client_timeout, settings.max_header_bytes


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a header size limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout, self.max_head_bytes = _limits()
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_too_large = False

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # httptools turns the exception raised by _count into a parser error, which
        # uvicorn answers with 400; say what really happened instead.
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self._cancel_head_timer()
        body = b'{"message":"Request headers are too large"}'
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes + 8192:  # 8 KiB for the request line
            self._head_too_large = True
            raise _HeadTooLarge
