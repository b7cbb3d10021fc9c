"""Plug-in views: add a page and its JSON twin without touching the core.

A plug-in is a Python module with a ``register(registry)`` function that calls
:meth:`PluginRegistry.add_view` once per view. Modules are found two ways:

* listed in the ``DOWNLINK_WEB_PLUGINS`` setting (comma-separated module names), or
* advertised by an installed distribution in the ``downlink.web_plugins`` entry-point
  group, the entry point naming the ``register`` function (``pkg.module:register``).

Each view gets ``/plugins/<name>`` (HTML, with a tab in the navigation bar),
``/plugins/<name>.json`` and ``/plugins/<name>.csv`` (its ``data["table"]``): one
:class:`~downlink.web.views.View`, like the core's pages. Its ``data`` function runs
on a read connection with the request's period and parameters and returns a JSON-able
dict; the HTML page shows the charts ``charts(data)`` describes and ``data["table"]``
(``{"columns": [...], "rows": [[...], ...]}``) unless the plug-in brings its own
template. See docs/web.md.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request

from downlink.errors import BadRequest
from downlink.store.database import Store
from downlink.store.queries.period import Period
from downlink.web import params
from downlink.web.rendering import NavItem
from downlink.web.views import Csv, View, router_of

log = logging.getLogger(__name__)

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


# Plug-in modules that moved: the old name is still accepted, with a warning.
MOVED = {"downlink.web.example_plugin": "downlink.sources.clearlinux.severity_plugin"}


def load_plugins(modules: Sequence[str], *, use_entry_points: bool = True) -> PluginRegistry:
    """Import the listed plug-in modules (and entry points) and let them register."""
    registry = PluginRegistry()
    registers: list[tuple[str, Callable[[PluginRegistry], None]]] = []
    for given in modules:
        name = MOVED.get(given, given)
        if name != given:
            log.warning("web plug-in %s has moved: use %s", given, name)
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


async def _named(request: Request) -> dict[str, Any]:
    return await _data(request, _view(request, request.path_params["name"]))


def _page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    view = _view(request, data["plugin"])
    return {
        "title": view.title,
        "active": f"plugin:{view.name}",
        "charts": view.charts(data) if view.charts is not None else [],
        "template": f"{view.name}/{view.template}" if view.template else "plugin.html",
        "view": view,
        "has_csv": isinstance(data.get("table"), dict),
    }


def _table(data: dict[str, Any]) -> dict[str, Any]:
    table = data.get("table")
    if not isinstance(table, dict) or "columns" not in table:
        raise BadRequest(f"plug-in view {data['plugin']!r} has no table", status=404)
    return table


# Every plug-in view: /plugins/<name>, its JSON twin and the CSV of ``data["table"]``.
VIEW = View(
    "/plugins/{name}",
    "{name}",
    "plugin.html",
    _named,
    page=_page,
    csv=Csv(
        lambda data: f"plugin-{data['plugin']}",
        lambda data: list(_table(data)["columns"]),
        lambda data: list(_table(data).get("rows", [])),
    ),
)


def plugin_router() -> APIRouter:
    """Routes serving every registered plug-in view."""
    return router_of([VIEW])
