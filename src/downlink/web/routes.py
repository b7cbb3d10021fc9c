"""Wire the web UI into an app: pages, plug-in views and the static files."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from downlink.settings import Settings
from downlink.web.pages import builds, consumers, crashes, mce, population, records, stats
from downlink.web.plugins import load_plugins, plugin_router
from downlink.web.rendering import CORE_NAV, STATIC, NavItem, Web, make_environment

PAGES = (records, builds, stats, crashes, mce, population, consumers)


def install(app: FastAPI, settings: Settings) -> None:
    """Add every page, the plug-in views and ``/static`` to ``app``.

    Sources bring navigation tabs (after the core's), templates (loaded as
    ``<source>/<file>``) and static files (served under ``/static/sources/<source>/``).
    """
    modules = [m for m in settings.web_plugins if m.lower() != "none"]
    registry = load_plugins(modules)
    sources = settings.registry
    app.state.web_plugins = registry
    source_nav = [NavItem(n.key, n.label, n.href) for n in sources.nav]
    app.state.web = Web(
        make_environment(registry.template_dirs, sources.templates),
        [*CORE_NAV, *source_nav, *registry.nav],
    )
    for page in PAGES:
        app.include_router(page.router)
    app.include_router(plugin_router())
    for name, folder in sources.static.items():
        app.mount(f"/static/sources/{name}", StaticFiles(directory=folder), name=f"static-{name}")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
