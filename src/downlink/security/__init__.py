"""Security basics as ASGI middleware: API tokens, rate limits, request limits.

:func:`install` wires them into an app. With no settings given everything stays open
and unlimited except the request-size and client-timeout limits, which are always on.
:func:`guard` wraps one endpoint in the same checks, for the collector's direct route
(see :mod:`downlink.direct`), sharing the app's rate-limit buckets.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from downlink.security.auth import TokenAuth
from downlink.security.errors import HttpErrors
from downlink.security.limits import RequestLimits
from downlink.security.paths import ingest_paths
from downlink.security.ratelimit import RateLimit, TokenBuckets
from downlink.settings import Settings


def _buckets(app: FastAPI, settings: Settings) -> TokenBuckets | None:
    if settings.rate_limit <= 0:
        return None
    found: TokenBuckets | None = getattr(app.state, "rate_buckets", None)
    if found is None:
        found = app.state.rate_buckets = TokenBuckets(settings.rate_limit, settings.rate_burst)
    return found


def install(app: FastAPI, settings: Settings) -> None:
    """Add the security middleware; the last added runs first (outermost)."""
    if settings.api_tokens:
        app.add_middleware(
            TokenAuth,
            tokens=settings.api_tokens,
            collector_auth=settings.collector_auth,
            ingest=ingest_paths(settings.registry),
        )
    buckets = _buckets(app, settings)
    if buckets is not None:
        app.add_middleware(
            RateLimit, rate=settings.rate_limit, burst=settings.rate_burst, buckets=buckets
        )
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        body_timeout=settings.client_timeout,
        request_timeout=settings.request_timeout,
    )


def guard(app: FastAPI, endpoint: ASGIApp, settings: Settings) -> ASGIApp:
    """Wrap ``endpoint`` in the checks :func:`install` adds, in the same order.

    Request limits, then the rate limit (the same buckets as the app's), then tokens,
    with limit errors raised while the body is read answered as JSON, as the app's
    exception middleware would.
    """
    inner: ASGIApp = endpoint
    if settings.api_tokens:
        inner = TokenAuth(
            inner,
            tokens=settings.api_tokens,
            collector_auth=settings.collector_auth,
            ingest=ingest_paths(settings.registry),
        )
    buckets = _buckets(app, settings)
    if buckets is not None:
        inner = RateLimit(inner, settings.rate_limit, settings.rate_burst, buckets=buckets)
    inner = RequestLimits(
        inner,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        body_timeout=settings.client_timeout,
        request_timeout=settings.request_timeout,
    )
    return HttpErrors(inner)
