"""The request limits' receive: a ready message arms no timer, a waiting one is bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.exceptions import HTTPException

from downlink.security.limits import RequestLimits

_HEAD = {"type": "http", "headers": [(b"content-length", b"2")]}


async def _through(receive: Any, *, timeout: float = 0.2) -> list[Any]:
    """Run RequestLimits over an app that reads two messages; what it received."""
    got: list[Any] = []

    async def app(_scope: Any, bounded: Any, _send: Any) -> None:
        got.append(await bounded())
        got.append(await bounded())

    async def send(_message: Any) -> None:
        raise AssertionError("nothing is answered here")

    await RequestLimits(app, 100, 1000, timeout, 10.0)(_HEAD, receive, send)
    return got


def test_ready_and_waiting_messages_both_arrive() -> None:
    async def main() -> list[Any]:
        parts = [{"type": "http.request", "body": b"a", "more_body": True},
                 {"type": "http.request", "body": b"b", "more_body": False}]

        async def receive() -> Any:
            if len(parts) == 1:
                await asyncio.sleep(0.01)  # the second part has to be waited for
            return parts.pop(0)

        return await _through(receive)

    got = asyncio.run(main())
    assert [m["body"] for m in got] == [b"a", b"b"]


def test_a_receive_that_never_ends_is_408_and_is_cancelled() -> None:
    cancelled = []

    async def main() -> None:
        first = True

        async def receive() -> Any:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"a", "more_body": True}
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            raise AssertionError("unreachable")

        await _through(receive, timeout=0.05)

    with pytest.raises(HTTPException) as info:
        asyncio.run(main())
    assert info.value.status_code == 408
    assert cancelled == [True]  # the timeout's cancellation reached the waiting receive
