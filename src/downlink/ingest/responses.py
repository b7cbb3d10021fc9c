"""Small JSON responses shared by the ingest endpoints."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise ``body`` with orjson."""
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def error(message: str, status: int = 400, headers: dict[str, str] | None = None) -> Response:
    """Return ``{"message": message}`` with the given status."""
    return json_response({"message": message}, status, headers)
