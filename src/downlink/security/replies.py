"""Answer a request straight from ASGI middleware with ``{"message": ...}``."""

from __future__ import annotations

import orjson
from starlette.types import Send


async def send_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    """Send a complete JSON error response."""
    body = orjson.dumps({"message": message})
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
