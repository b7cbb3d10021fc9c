"""Bearer-token authentication of the query API and admin actions.

Active only when ``DOWNLINK_API_TOKENS`` is set. Then every request needs
``Authorization: Bearer <token>`` with one of the tokens, except liveness and API
description paths and, unless ``DOWNLINK_COLLECTOR_AUTH`` is on, the ingest endpoints.
Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from downlink.security.paths import IngestPaths, builtin_ingest_paths, is_open
from downlink.security.replies import send_error

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="downlink"'}


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, if there is one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def holds_token(tokens: Iterable[str], headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when no tokens are configured or the request carries one of them."""
    known = [t.encode("utf-8") for t in tokens if t]
    if not known:
        return True
    token = bearer_token(headers)
    if token is None:
        return False
    given = token.encode("utf-8")
    found = False
    for candidate in known:  # every one, so the time taken does not reveal which matched
        found |= hmac.compare_digest(given, candidate)
    return found


class TokenAuth:
    """ASGI middleware refusing requests without a valid API token (401)."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Iterable[str],
        collector_auth: bool = False,
        ingest: IngestPaths | None = None,
    ) -> None:
        self.app = app
        self.tokens = tuple(t.encode("utf-8") for t in tokens if t)
        self.collector_auth = collector_auth
        self.ingest = ingest or builtin_ingest_paths()

    def valid(self, token: str | None) -> bool:
        """True when ``token`` is one of the configured tokens."""
        if token is None:
            return False
        given = token.encode("utf-8")
        # Check every token so the time taken does not reveal which one matched.
        found = False
        for known in self.tokens:
            found |= hmac.compare_digest(given, known)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = "WEBSOCKET" if scope["type"] == "websocket" else scope["method"]
        exempt = is_open(path) or (self.ingest.match(method, path) and not self.collector_auth)
        if exempt or self.valid(bearer_token(scope["headers"])):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, 401, "A valid API token is required (Authorization: Bearer …)",
                         _CHALLENGE)
