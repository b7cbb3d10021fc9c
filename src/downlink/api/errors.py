"""Errors of the JSON API: every failure is ``{"message": ...}`` with a 4xx status.

A value the database refuses (``DataError``: a check missing before it) is a 400 too.
Two exceptions to 4xx: a database that cannot be reached (or has no free connection)
is a 503 with Retry-After, without the driver's text (it names hosts and ports); and a
405 lists in ``Allow`` the methods of every route on the path, not only those of the
first route that matched it (``GET /benchmarks`` and ``POST /benchmarks`` are two).
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from downlink.analytics.client import AnalyticsError
from downlink.errors import BadRequest

__all__ = ["BadRequest", "allowed_methods", "install"]

log = logging.getLogger(__name__)

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _json(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"message": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into JSON messages."""

    @app.exception_handler(BadRequest)
    async def _bad_request(_request: Request, exc: BadRequest) -> Response:
        return _json(exc.message, exc.status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request))
        return _json(str(exc.detail), exc.status_code, headers)

    async def _unavailable(_request: Request, exc: Exception) -> Response:
        log.warning("database unavailable: %s", exc)
        return _json("The database is unavailable, retry later", 503, {"Retry-After": "5"})

    for kind in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(AnalyticsError)
    async def _analytics(_request: Request, exc: AnalyticsError) -> Response:
        log.warning("analytics store unavailable: %s", exc)
        return _json("The analytics store is unavailable, retry later", 503,
                     {"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def _refused_value(request: Request, exc: DataError) -> Response:
        # A safety net: parameters are checked before they reach the database
        # (downlink/params.py), so this is a check missing somewhere; it is logged as such.
        log.warning("the database refused a value of %s %s: %s", request.method,
                    request.url.path, exc.orig)
        return _json("The database cannot take a value of this request", 400)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            msg = err.get("msg", "invalid")
            if err.get("type") == "missing" and where:
                parts.append(f"{where} is required")
            else:
                parts.append(f"{where}: {msg}" if where else msg)
        return _json("; ".join(parts) or "invalid request", 400)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of ``app`` serves at the request's path, in a fixed order.

    Each method is tried against the routes as the router would (``matches``), so
    routes nested in included routers count too.
    """
    routes = app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
