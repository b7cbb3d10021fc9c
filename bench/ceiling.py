"""The do-nothing ASGI app: reads the request body, answers 201 with a small JSON body.

It is the ceiling the ingest benchmark compares the collector against: same uvicorn,
same HTTP parser, same load generator, no validation and no database.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

BODY = b'{"id":1,"message":"ok"}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with 201."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
