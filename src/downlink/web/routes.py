"""Wire the web UI into an app: pages, plug-in views and the static files."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from downlink.settings import Settings
from downlink.web.pages import apidocs, builds, crashes, mce, nodes, population, records, stats
from downlink.web.plugins import load_plugins, plugin_router
from downlink.web.rendering import CORE_NAV, STATIC, Web, make_environment

PAGES = (records, builds, stats, crashes, mce, population, nodes, apidocs)


def install(app: FastAPI, settings: Settings) -> None:
    """Add every page, the plug-in views and ``/static`` to ``app``."""
    modules = [m for m in settings.web_plugins if m.lower() != "none"]
    registry = load_plugins(modules)
    app.state.web_plugins = registry
    app.state.web = Web(make_environment(registry.template_dirs), [*CORE_NAV, *registry.nav])
    for page in PAGES:
        app.include_router(page.router)
    app.include_router(plugin_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
