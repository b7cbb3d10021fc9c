"""The application class: FastAPI with a short way in for the ingest hot path.

Every request to a FastAPI app walks about ten ASGI layers before its endpoint (error
middleware, exception handlers, body-limit and telemetry wrappers, the router's
matching): about 60 us per request, a third of the collector's whole cost in the
in-process profile. :class:`Downlink` serves a few (method, path) pairs, the
single-record collector posts, straight from ``__call__`` to an endpoint that carries
its own guards (:func:`downlink.security.guard`: the same limits, rate limit and tokens
as the rest of the app), and (method, prefix) pairs whose path is the prefix and one
more segment (OONI's ``POST /report/{report_id}``: the router's matching cost about
0.7 ms of a 50 KB submission's 1.7, ``bench/ooni_submit_cpu.py``). Everything else
goes through the normal stack.

It also answers HEAD for every GET route, and writes the access log
(:mod:`downlink.access_log`) when one is configured.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from downlink.access_log import AccessLog


class Downlink(FastAPI):
    """FastAPI plus direct routes for the ingest hot path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct: dict[tuple[str, str], ASGIApp] = {}
        self.direct_prefixes: list[tuple[str, str, ASGIApp]] = []
        self.access_log: AccessLog | None = None

    def add_direct_route(self, method: str, path: str, endpoint: ASGIApp) -> None:
        """Serve ``method path`` with ``endpoint`` directly (no middleware, no router)."""
        self.direct[(method, path)] = endpoint

    def add_direct_prefix(self, method: str, prefix: str, endpoint: ASGIApp) -> None:
        """Serve ``method`` on ``prefix`` plus one non-empty path segment (``/report/``
        serves ``/report/abc``, not ``/report/abc/close``) with ``endpoint`` directly."""
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"a direct prefix starts and ends with '/': {prefix!r}")
        self.direct_prefixes.append((method, prefix, endpoint))

    def _direct(self, method: str, path: str) -> ASGIApp | None:
        endpoint = self.direct.get((method, path))
        if endpoint is not None:
            return endpoint
        for m, prefix, found in self.direct_prefixes:
            if m == method and path.startswith(prefix):
                rest = path[len(prefix):]
                if rest and "/" not in rest:
                    return found
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a direct route if the request is one, else the whole app."""
        if scope["type"] == "http" and self.access_log is not None:
            await self.access_log(self._serve, scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._direct(scope["method"], scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
            if scope["method"] == "HEAD":
                # HEAD is GET without the body, for every GET route (FastAPI routes
                # answer only the methods they declare; load balancers probe with HEAD).
                scope = {**scope, "method": "GET"}
                send = _without_body(send)
        await super().__call__(scope, receive, send)


def _without_body(send: Send) -> Send:
    """Pass the response on with empty body parts (headers, Content-Length included)."""

    async def head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return head
