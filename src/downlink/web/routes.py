"""Wire the web UI into an app: pages, plug-in views and the static files."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from downlink.errors import BadRequest
from downlink.settings import Settings
from downlink.web.pages import apidocs, consumers, records, search, senders
from downlink.web.plugins import load_plugins, plugin_router
from downlink.web.rendering import (
    CORE_NAV,
    CORE_NAV_LAST,
    STATIC,
    NavItem,
    Web,
    make_environment,
    web_of,
)

PAGES = (records, consumers, senders, apidocs, search)


def install(app: FastAPI, settings: Settings) -> None:
    """Add every page, the plug-in views and ``/static`` to ``app``.

    Sources bring navigation tabs (between the core's records and API tabs), templates (loaded as
    ``<source>/<file>``) and static files (served under ``/static/sources/<source>/``).
    """
    modules = [m for m in settings.web_plugins if m.lower() != "none"]
    registry = load_plugins(modules)
    sources = settings.registry
    app.state.web_plugins = registry
    source_nav = [NavItem(n.key, n.label, n.href, n.keeps_period) for n in sources.nav]
    app.state.web = Web(
        make_environment(registry.template_dirs, sources.templates),
        [*CORE_NAV, *source_nav, *CORE_NAV_LAST, *registry.nav],
    )
    for page in PAGES:
        app.include_router(page.router)
    app.include_router(plugin_router())
    for name, folder in sources.static.items():
        app.mount(f"/static/sources/{name}", StaticFiles(directory=folder), name=f"static-{name}")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/favicon.ico", _favicon, methods=["GET"], include_in_schema=False)
    _html_errors(app)


async def _favicon() -> Response:
    """The icon browsers ask for on pages without one (the JSON twins): the SVG one."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


_NOT_PAGES = ("/api/", "/-/", "/nodes", "/static/", "/v2/", "/v3/", "/metrics", "/openapi")


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return (
        "text/html" in request.headers.get("accept", "")
        and not path.endswith((".json", ".csv"))
        and not path.startswith(_NOT_PAGES)
    )


def _html_errors(app: FastAPI) -> None:
    """Browsers asking for an unknown page (or a malformed id) get a page saying so.

    So does a page whose handler lets a refusal (``BadRequest``) out: a ``View`` shows
    its refusals inside the page with the form kept, and this is the net under every
    other page a source serves. Everything else, and every JSON or CSV path, keeps the
    ``{"message": …}`` answer.
    """
    for kind in (HTTPException, RequestValidationError, BadRequest):
        as_json = app.exception_handlers[kind]

        async def handler(request: Request, exc: Exception, as_json: Any = as_json) -> Response:
            response: Response = await as_json(request, exc)
            if not _wants_html(request):
                return response
            status = response.status_code
            message = orjson.loads(bytes(response.body)).get("message", "")
            return web_of(request).page(
                "error.html",
                title="Page not found" if status == 404 else "Cannot show this page",
                active="",
                status=status,
                error=f"{request.url.path}: {message}",
            )

        app.add_exception_handler(kind, handler)
