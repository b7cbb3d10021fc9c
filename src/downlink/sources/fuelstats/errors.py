"""fuel-stats errors: always ``{"status": "error", "message": ...}``, never a 500.

Only this source's paths answer in this envelope (the original collector's); the rest
of Downlink keeps its ``{"message": ...}`` errors.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response


class FuelError(Exception):
    """A refused fuel-stats request, with its status and the message the client sees."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def error_response(
    status: int, message: str, exec_time: float | None = None, retry_after: int | None = None
) -> Response:
    """The error envelope (with ``Retry-After`` for a 503 the sender should retry)."""
    body: dict[str, object] = {"status": "error", "message": message}
    if exec_time is not None:
        body["exec_time"] = exec_time
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


async def handle(_request: Request, exc: Exception) -> Response:
    """Exception handler for :class:`FuelError` (registered for that class only)."""
    assert isinstance(exc, FuelError)
    return error_response(exc.status, exc.message, retry_after=exc.retry_after)


def method_not_allowed(method: str, path: str) -> FuelError:
    """405 in the original's words."""
    return FuelError(405, f"405 Method Not Allowed: {method} is not allowed on {path}")


def not_found(path: str) -> FuelError:
    """404 in the original's words."""
    return FuelError(404, f"404 Not Found: {path} is not a fuel-stats resource")
