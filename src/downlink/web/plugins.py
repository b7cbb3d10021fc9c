"""Plug-in views: add a page and its JSON twin without touching the core.

A plug-in is a Python module with a ``register(registry)`` function that calls
:meth:`PluginRegistry.add_view` once per view. Modules are found two ways:

* listed in the ``DOWNLINK_WEB_PLUGINS`` setting (comma-separated module names), or
* advertised by an installed distribution in the ``downlink.web_plugins`` entry-point
  group, the entry point naming the ``register`` function (``pkg.module:register``).

Each view gets ``/plugins/<name>`` (HTML, with a tab in the navigation bar) and
``/plugins/<name>.json``. Its ``data`` function runs on a read connection with the
request's period and parameters and returns a JSON-able dict; the HTML page shows the
charts ``charts(data)`` describes and ``data["table"]`` (``{"columns": [...],
"rows": [[...], ...]}``) unless the plug-in brings its own template. See docs/web.md.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from downlink.api.errors import BadRequest
from downlink.store.database import Store
from downlink.store.queries.period import Period
from downlink.web import params
from downlink.web.rendering import NavItem, shows_errors, twin, web_of

ENTRY_POINT_GROUP = "downlink.web_plugins"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


class PluginError(RuntimeError):
    """A plug-in could not be loaded or registered a bad view."""


@dataclass(frozen=True)
class PluginQuery:
    """What a plug-in's data function is asked: the period and the query parameters.

    Every parameter value is plain text (at most 1,000 characters, no NUL or other
    control character: :func:`downlink.web.params.plain_params`), so a plug-in may
    hand them to the database as they are.
    """

    period: Period
    params: Mapping[str, str]


@dataclass(frozen=True)
class PluginView:
    """One plug-in view.

    ``name`` is the URL slug, ``title`` the tab label, ``data(conn, query)`` the numbers
    (the JSON twin returns them as they are), ``charts(data)`` optional chart specs made
    with :func:`downlink.web.rendering.chart`, ``template`` an optional template in
    ``templates_dir`` (it is loaded as ``<name>/<template>`` and may extend base.html).
    """

    name: str
    title: str
    data: Callable[[Connection, PluginQuery], dict[str, Any]]
    charts: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    template: str | None = None
    templates_dir: Path | None = None
    default_days: int = 30
    description: str = ""


@dataclass
class PluginRegistry:
    """The views registered by every loaded plug-in, in registration order."""

    views: dict[str, PluginView] = field(default_factory=dict)

    def add_view(self, view: PluginView) -> None:
        """Register one view; names must be unique slugs."""
        if not _NAME.fullmatch(view.name):
            raise PluginError(f"plug-in view name {view.name!r} must be a lowercase slug")
        if view.name in self.views:
            raise PluginError(f"two plug-in views are named {view.name!r}")
        if view.template is not None and view.templates_dir is None:
            raise PluginError(f"plug-in view {view.name!r} has a template but no templates_dir")
        self.views[view.name] = view

    @property
    def nav(self) -> list[NavItem]:
        """One navigation tab per view."""
        return [
            NavItem(f"plugin:{v.name}", v.title, f"/plugins/{v.name}") for v in self.views.values()
        ]

    @property
    def template_dirs(self) -> dict[str, Path]:
        """Template folders by view name."""
        return {v.name: v.templates_dir for v in self.views.values() if v.templates_dir}


def load_plugins(modules: Sequence[str], *, use_entry_points: bool = True) -> PluginRegistry:
    """Import the listed plug-in modules (and entry points) and let them register."""
    registry = PluginRegistry()
    registers: list[tuple[str, Callable[[PluginRegistry], None]]] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise PluginError(f"cannot import web plug-in {name!r}: {exc}") from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise PluginError(f"web plug-in {name!r} has no register(registry) function")
        registers.append((name, register))
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.value.split(":")[0] in modules:
                continue  # listed in the setting as well: register once
            try:
                registers.append((ep.name, ep.load()))
            except Exception as exc:  # noqa: BLE001 - any import failure names the plug-in
                raise PluginError(
                    f"cannot load web plug-in entry point {ep.name!r}: {exc}"
                ) from exc
    for name, register in registers:
        try:
            register(registry)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - report which plug-in failed
            raise PluginError(f"web plug-in {name!r} failed to register: {exc}") from exc
    return registry


def _view(request: Request, name: str) -> PluginView:
    registry: PluginRegistry = request.app.state.web_plugins
    view = registry.views.get(name)
    if view is None:
        raise BadRequest(f"no plug-in view named {name!r}", status=404)
    return view


async def _data(request: Request, view: PluginView) -> dict[str, Any]:
    query = params.plain_params(request.query_params)
    q = PluginQuery(params.period(query, view.default_days), query)
    store: Store = request.app.state.store
    data = await store.read(view.data, q)
    return {"plugin": view.name, "period": q.period.as_json(), **data}


def plugin_router() -> APIRouter:
    """Routes serving every registered plug-in view."""
    router = APIRouter(include_in_schema=False)

    @router.get("/plugins/{name}.json")
    async def plugin_json(request: Request, name: str) -> Response:
        """JSON twin of a plug-in view."""
        view = _view(request, name)
        return twin(await _data(request, view))

    @router.get("/plugins/{name}")
    @shows_errors("plugin.html", "{name}", "")
    async def plugin_page(request: Request, name: str) -> Response:
        """Render a plug-in view."""
        view = _view(request, name)
        data = await _data(request, view)
        charts = view.charts(data) if view.charts is not None else []
        template = f"{view.name}/{view.template}" if view.template else "plugin.html"
        return web_of(request).page(
            template,
            title=view.title,
            active=f"plugin:{view.name}",
            charts=charts,
            data=data,
            view=view,
            form=dict(request.query_params),
        )

    return router
