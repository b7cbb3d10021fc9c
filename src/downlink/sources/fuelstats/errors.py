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

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, exec_time: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The error envelope."""
    body: dict[str, object] = {"status": "error", "message": message}
    if exec_time is not None:
        body["exec_time"] = exec_time
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def handle(_request: Request, exc: Exception) -> Response:
    """Exception handler for :class:`FuelError` (registered for that class only)."""
    assert isinstance(exc, FuelError)
    return error_response(exc.status, exc.message, headers=exc.headers)


def method_not_allowed(method: str, path: str) -> FuelError:
    """405 in the original's words."""
    return FuelError(405, f"405 Method Not Allowed: {method} is not allowed on {path}")


def not_found(path: str) -> FuelError:
    """404 in the original's words."""
    return FuelError(404, f"404 Not Found: {path} is not a fuel-stats resource")
