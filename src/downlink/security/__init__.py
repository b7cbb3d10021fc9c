"""Security basics as ASGI middleware: API tokens, rate limits, request limits.

:func:`install` wires them into an app. With no settings given everything stays open
and unlimited except the request-size and client-timeout limits, which are always on.
"""

from __future__ import annotations

from fastapi import FastAPI

from downlink.security.auth import TokenAuth
from downlink.security.limits import RequestLimits
from downlink.security.ratelimit import RateLimit
from downlink.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Add the security middleware; the last added runs first (outermost)."""
    if settings.api_tokens:
        app.add_middleware(
            TokenAuth, tokens=settings.api_tokens, collector_auth=settings.collector_auth
        )
    if settings.rate_limit > 0:
        app.add_middleware(RateLimit, rate=settings.rate_limit, burst=settings.rate_burst)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        body_timeout=settings.client_timeout,
    )
