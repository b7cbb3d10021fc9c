"""Answer ``HTTPException`` raised inside a bare ASGI chain, as Starlette's middleware would.

The request limits raise 408/413 from ``receive`` while a body is read; inside the app
Starlette's exception middleware turns them into responses. An endpoint served outside
that stack (the collector's direct route) is wrapped in :class:`HttpErrors` instead.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from downlink.security.replies import send_error


class HttpErrors:
    """ASGI wrapper: an ``HTTPException`` becomes a JSON error answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except HTTPException as exc:
            if started:
                raise
            await send_error(send, exc.status_code, str(exc.detail), dict(exc.headers or {}))
