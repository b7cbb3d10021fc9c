"""Errors of the JSON API: every failure is ``{"message": ...}`` with a 4xx status."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the API refuses, with the message the client sees."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


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
    async def _http(_request: Request, exc: HTTPException) -> Response:
        return _json(str(exc.detail), exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
        return _json("; ".join(parts) or "invalid request", 400)
