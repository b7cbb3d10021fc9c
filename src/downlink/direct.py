"""The application class: FastAPI with a short way in for the ingest hot path.

Every request to a FastAPI app walks about ten ASGI layers before its endpoint (error
middleware, exception handlers, body-limit and telemetry wrappers, the router's
matching): about 60 us per request, a third of the collector's whole cost in the
in-process profile. :class:`Downlink` serves a few (method, path) pairs, the
single-record collector posts, straight from ``__call__`` to an endpoint that carries
its own guards (:func:`downlink.security.guard`: the same limits, rate limit and tokens
as the rest of the app). Everything else goes through the normal stack.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class Downlink(FastAPI):
    """FastAPI plus direct routes for the ingest hot path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct: dict[tuple[str, str], ASGIApp] = {}

    def add_direct_route(self, method: str, path: str, endpoint: ASGIApp) -> None:
        """Serve ``method path`` with ``endpoint`` directly (no middleware, no router)."""
        self.direct[(method, path)] = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a direct route if the request is one, else the whole app."""
        if scope["type"] == "http":
            endpoint = self.direct.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
