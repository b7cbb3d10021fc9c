"""Request limits applied to every endpoint before any handler runs.

* headers larger than ``max_header_bytes`` in total: 431;
* a declared ``Content-Length`` above ``max_body_bytes``: 413 at once, the body unread;
  an unparseable one: 400;
* a body (chunked or not) growing past ``max_body_bytes`` while it is read: 413;
* a client that pauses more than ``body_timeout`` seconds while sending its body: 408.

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
        self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int, body_timeout: float
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout

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
        await self.app(scope, _BoundedReceive(receive, self.max_body_bytes, self.body_timeout),
                       send)


class _BoundedReceive:
    """A ``receive`` that times out slow bodies and counts their size."""

    def __init__(self, receive: Receive, limit: int, timeout: float) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.size = 0
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            # The body is complete: later receives only wait for a disconnect.
            return await self.receive()
        try:
            # asyncio.timeout, not wait_for: no extra task per receive on the hot path.
            async with asyncio.timeout(self.timeout):
                message = await self.receive()
        except TimeoutError:
            self.done = True
            raise HTTPException(
                408, f"Request body not received within {self.timeout:g} s", _CLOSE
            ) from None
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
