"""``/docs``: the OpenAPI description in Swagger UI, served from ``/static`` (no CDN).

FastAPI's own ``/docs`` loads Swagger UI from a CDN and starts it with an inline
script, so it is blank offline and under the pages' Content-Security-Policy. This
page loads the vendored ``swagger-ui-dist`` bundle and ``static/js/apidocs.js``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.web.rendering import SWAGGER_UI, web_of

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def api_docs(request: Request) -> Response:
    """Render Swagger UI for ``/openapi.json``."""
    return web_of(request).page(
        "apidocs.html", title="HTTP API", active="docs", swagger_ui=SWAGGER_UI
    )
