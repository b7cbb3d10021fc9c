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
from collections.abc import Awaitable, Coroutine, Generator
from types import CoroutineType
from typing import Any, cast

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
        # One pass over the headers: their size, and the declared body length(s).
        size = 0
        lengths: list[bytes] = []
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                lengths.append(value)
        if size > self.max_header_bytes:
            await send_error(send, 431, f"Request headers exceed {self.max_header_bytes} bytes")
            return
        for declared in lengths:
            if not declared.isdigit() or len(declared) > 18:
                await send_error(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_body_bytes:
                await send_error(
                    send,
                    413,
                    f"body of {int(declared)} bytes is larger than the limit of "
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
        pending = self.receive()
        if isinstance(pending, CoroutineType):
            # A message that has arrived (a small body, read with its head) comes back
            # without the coroutine ever suspending: no timer is armed for it. Only a
            # receive that has to wait runs under the timeout (about 8 us saved per
            # collector post, bench/ingest_cpu.py).
            try:
                waiting = pending.send(None)
            except StopIteration as ready:
                message = cast(Message, ready.value)
            else:
                message = await self._bounded(_Resume(pending, waiting))
        else:
            message = await self._bounded(pending)
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

    async def _bounded(self, pending: Awaitable[Message]) -> Message:
        """Await ``pending`` until the earlier of the pause limit and the deadline."""
        pause_ends = asyncio.get_running_loop().time() + self.timeout
        whole = self.deadline < pause_ends
        try:
            # asyncio.timeout, not wait_for: no extra task per receive.
            async with asyncio.timeout_at(min(pause_ends, self.deadline)):
                return await pending
        except TimeoutError:
            self.done = True
            what = (f"Request body not complete within {self.total:g} s" if whole
                    else f"Request body not received within {self.timeout:g} s")
            raise HTTPException(408, what, _CLOSE) from None


class _Resume:
    """Await a coroutine already started by hand that is suspended on ``waiting``.

    Hands each value it yields to the event loop and everything thrown in (a
    cancellation, the timeout's) to the coroutine, as awaiting it directly would.
    """

    def __init__(self, coro: Coroutine[Any, Any, Message], waiting: Any) -> None:
        self.coro = coro
        self.waiting = waiting

    def __await__(self) -> Generator[Any, Any, Message]:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # noqa: BLE001 - handed to the coroutine
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return cast(Message, done.value)
                continue
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return cast(Message, done.value)
