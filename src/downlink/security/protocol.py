"""The HTTP and websocket protocols ``downlink serve`` runs: uvicorn's, plus guards.

uvicorn reads request headers without a size or time limit, parses every pipelined
request it is sent whether or not the answers to the earlier ones are being read, and
keeps writing to a client that never reads. :class:`GuardedHttpToolsProtocol` adds:

* a head deadline: the request head must be complete within
  ``DOWNLINK_CLIENT_TIMEOUT`` seconds of its first byte (or of the connection opening),
  otherwise the connection is closed (slowloris);
* a head size limit: at most ``DOWNLINK_MAX_HEADER_BYTES`` (plus the request line),
  otherwise 431 and the connection is closed, before the rest is buffered;
* a request deadline: the body must be complete within ``DOWNLINK_REQUEST_TIMEOUT``
  seconds of the end of the head. A handler reading the body answers 408 at the
  deadline (:mod:`downlink.security.limits`); a body nobody reads (the answer was
  already sent) has its connection closed :data:`REQUEST_GRACE` seconds later;
* an output bound: the connection's write buffer stops at
  ``DOWNLINK_CONNECTION_BUFFER_BYTES`` (the handler waits for it to drain). While the
  buffer is above that mark, or :data:`PIPELINE_MAX` pipelined requests already wait
  for their turn, no more input is parsed: what was read is held (at most one socket
  read) and the socket is not read until the client takes its answers;
* a stall limit: a client that takes none of its answers for
  ``DOWNLINK_CLIENT_TIMEOUT`` seconds while the buffer is full is disconnected.

:class:`GuardedWebSocketsProtocol` gives websockets the same stall limit, with the
time a source's ``Source.ws_stall`` setting names (substrate's
``DOWNLINK_SUBSTRATE_WS_IDLE_TIMEOUT_S``): a peer that reads nothing of what it is
sent (flush answers, pings) while the buffer is full is dropped like an idle one.

Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from downlink.settings import Settings, from_env

# Pipelined requests parsed ahead of the one being answered; more wait unparsed.
PIPELINE_MAX = 16
# Input is parsed in slices of this size, so that holding can start between requests
# of one socket read: at most a slice's worth of tiny requests is parsed past a limit.
SLICE_BYTES = 8192
# Seconds after the request deadline before an unread body's connection is closed,
# so that a handler reading it answers 408 first.
REQUEST_GRACE = 1.0


class _HeadTooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Limits:
    head_timeout: float
    max_head_bytes: int
    request_timeout: float
    buffer_bytes: int
    ws_stall_timeout: float


@lru_cache(maxsize=1)
def _limits() -> _Limits:
    s = from_env()
    return _Limits(s.client_timeout, s.max_header_bytes, s.request_timeout,
                   s.connection_buffer_bytes, _ws_stall(s))


def _ws_stall(s: Settings) -> float:
    """The largest websocket stall limit the sources ask for (``Source.ws_stall``);
    ``DOWNLINK_CLIENT_TIMEOUT`` when none does."""
    found = [float(s.sources[src.name][src.ws_stall]) for src in s.registry if src.ws_stall]
    return max(found) if found else s.client_timeout


class _StallTimer:
    """Aborts a transport whose paused write buffer has not drained in time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.handle: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.Transport) -> None:
        if self.handle is None and self.timeout > 0:
            self.handle = self.loop.call_later(self.timeout, self._fire, transport)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self, transport: asyncio.Transport) -> None:
        self.handle = None
        # close() would wait for the buffer to drain, which is what never happens.
        # (uvloop's transports are not asyncio.WriteTransport instances.)
        transport.abort()


class _GuardedFlow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while input is held.

    A resume asked for while holding is owed, and paid by :meth:`settle` once the held
    input is parsed (unless a pause asked for meanwhile cancels it), so that uvicorn's
    own pauses and resumes keep their meaning.
    """

    def __init__(self, transport: asyncio.Transport, holding: Callable[[], bool]) -> None:
        super().__init__(transport)
        self._holding = holding
        self.owed = False

    def pause_reading(self) -> None:
        self.owed = False
        super().pause_reading()

    def resume_reading(self) -> None:
        if self._holding():
            self.owed = True
            return
        self.owed = False
        super().resume_reading()

    def hold(self) -> None:
        """Stop reading while input is held; reading that was on is owed back."""
        if not self.read_paused:
            self.owed = True
            super().pause_reading()

    def settle(self) -> None:
        """Resume reading if that is owed and nothing is held any more."""
        if self.owed and not self._holding():
            self.resume_reading()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head, request, output and stall limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = _limits()
        self.head_timeout = limits.head_timeout
        self.max_head_bytes = limits.max_head_bytes
        self.request_timeout = limits.request_timeout
        self.buffer_bytes = limits.buffer_bytes
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_too_large = False
        self._request_timer: asyncio.TimerHandle | None = None
        self._stall = _StallTimer(self.loop, limits.head_timeout)
        self._held = bytearray()

    # -- timers ------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    # -- connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=self.buffer_bytes)
        self.flow: _GuardedFlow = _GuardedFlow(transport, self._holding)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_request_timer()
        self._stall.stop()
        self._held.clear()
        super().connection_lost(exc)

    # -- input: parse in slices, hold what the client may not send yet ------------

    def _backlog(self) -> bool:
        """True when answers are piling up: no more requests are parsed for now."""
        return len(self.pipeline) >= PIPELINE_MAX or self.flow.write_paused

    def _holding(self) -> bool:
        return bool(self._held) or self._backlog()

    def data_received(self, data: bytes) -> None:
        if self._held:
            self._held += data
            self.flow.hold()
            return
        self._feed(memoryview(data))

    def _feed(self, data: memoryview) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._backlog():
                self._held += data[pos:]
                self.flow.hold()
                return
            super().data_received(data[pos : pos + SLICE_BYTES])  # type: ignore[arg-type]
            pos += SLICE_BYTES
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # an error answer, or upgraded to a websocket

    def _release(self) -> None:
        """Parse held input once the answers it waited for are taken; read again."""
        if self._backlog() or self.transport.is_closing():
            return
        if self._held:
            held = bytes(self._held)
            self._held.clear()
            self._feed(memoryview(held))
        self.flow.settle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._release()

    # -- output: bounded buffer, stalled readers cut off ---------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stall.start(self.transport)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stall.stop()
        self._release()

    # -- head limits ---------------------------------------------------------------

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
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._cancel_request_timer()
            self._request_timer = self.loop.call_later(
                self.request_timeout + REQUEST_GRACE, self._timed_out
            )

    def on_message_complete(self) -> None:
        self._cancel_request_timer()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes + 8192:  # 8 KiB for the request line
            self._head_too_large = True
            raise _HeadTooLarge


class GuardedWebSocketsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, dropping peers that stop reading what they are sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stall = _StallTimer(self.loop, _limits().ws_stall_timeout)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stall.start(self.transport)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stall.stop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stall.stop()
        super().connection_lost(exc)
