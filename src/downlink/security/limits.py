"""Request limits applied to every endpoint before any handler runs.

* headers larger than ``max_header_bytes`` in total: 431;
* a declared ``Content-Length`` above ``max_body_bytes``: 413 at once, the body unread;
  an unparseable one: 400;
* a body (chunked or not) growing past ``max_body_bytes`` while it is read: 413;
* a client that pauses more than ``body_timeout`` seconds while sending its body, or
  whose body is not complete ``request_timeout`` seconds after its head: 408.

Header-size and header-time limits that act while the headers are still arriving are
in :mod:`downlink.security.protocol`; this middleware sees a request once its headers
are complete.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from downlink.security.replies import send_error

# The rest of the body is never read: end the connection after the answer.
_CLOSE = {"Connection": "close"}


def header_bytes(headers: list[tuple[bytes, bytes]]) -> int:
    """Size of the headers as sent on the wire (name, ``: ``, value, CRLF)."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


class RequestLimits:
    """ASGI middleware enforcing header size, body size and body timeout."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_header_bytes: int,
        body_timeout: float,
        request_timeout: float,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if header_bytes(headers) > self.max_header_bytes:
            await send_error(send, 431, f"Request headers exceed {self.max_header_bytes} bytes")
            return
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    await send_error(send, 400, "Content-Length is not a number")
                    return
                if int(value) > self.max_body_bytes:
                    await send_error(
                        send,
                        413,
                        f"body of {int(value)} bytes is larger than the limit of "
                        f"{self.max_body_bytes}",
                        _CLOSE,
                    )
                    return
        bounded = _BoundedReceive(receive, self.max_body_bytes, self.body_timeout,
                                  self.request_timeout)
        await self.app(scope, bounded, send)


class _BoundedReceive:
    """A ``receive`` that times out slow bodies and counts their size."""

    def __init__(self, receive: Receive, limit: int, timeout: float, total: float) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.total = total
        self.deadline = asyncio.get_running_loop().time() + total
        self.size = 0
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            # The body is complete: later receives only wait for a disconnect.
            return await self.receive()
        # The earlier of the pause limit and the whole-request deadline.
        pause_ends = asyncio.get_running_loop().time() + self.timeout
        whole = self.deadline < pause_ends
        try:
            # asyncio.timeout, not wait_for: no extra task per receive on the hot path.
            async with asyncio.timeout_at(min(pause_ends, self.deadline)):
                message = await self.receive()
        except TimeoutError:
            self.done = True
            what = (f"Request body not complete within {self.total:g} s" if whole
                    else f"Request body not received within {self.timeout:g} s")
            raise HTTPException(408, what, _CLOSE) from None
        if message["type"] != "http.request":
            self.done = True
            return message
        self.size += len(message.get("body", b""))
        if self.size > self.limit:
            self.done = True
            raise HTTPException(
                413, f"body is larger than the limit of {self.limit} bytes", _CLOSE
            )
        if not message.get("more_body", False):
            self.done = True
        return message
