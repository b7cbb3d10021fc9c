"""Reading request bodies with a size limit, and parsing large ones off the event loop.

:func:`read_body` reads a Starlette request's; :func:`receive_body` reads straight
from ASGI ``receive`` messages, for the endpoints served past the router
(:mod:`downlink.direct`), where building a request object would cost more than the read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

T = TypeVar("T")

# Bodies from this size on are parsed and validated in a worker thread, so that the
# event loop keeps answering health checks and small posts meanwhile. Two threads: the
# work holds the interpreter lock much of the time, more would only queue on it.
OFFLOAD_BYTES = 64 * 1024
_PARSERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="downlink-parse")


class BodyTooLarge(Exception):
    """The request body is larger than the configured limit."""


class ClientGone(Exception):
    """The client disconnected before its whole body arrived."""


async def read_body(request: Request, limit: int) -> bytes:
    """Return the body, raising BodyTooLarge as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes is larger than the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body of an ASGI request, from ``receive``; ``declared`` is its Content-Length.

    BodyTooLarge as soon as the declared or received size passes ``limit``; ClientGone
    when the client disconnects first. A body that comes in one message (the usual
    case) is returned as it is, without a copy.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes is larger than the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is larger than the limit of {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """Return ``fn(*args)``: here for a body under OFFLOAD_BYTES, else in a worker thread."""
    if size < OFFLOAD_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_PARSERS, fn, *args)
