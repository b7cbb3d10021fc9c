"""Jinja environment, navigation and the page / JSON-twin responses every view uses.

Templates are autoescaped: record payloads and every other stored value are
untrusted. HTML pages also carry a Content-Security-Policy that only lets the
server's own scripts run, so an injected ``<script>`` would stay inert even if
escaping were ever bypassed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
CHART_JS = "chart-4.6.1.umd.min.js"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class NavItem:
    """One tab of the navigation bar."""

    key: str
    label: str
    href: str


CORE_NAV: tuple[NavItem, ...] = (
    NavItem("records", "Records", "/records"),
    NavItem("builds", "Builds", "/builds"),
    NavItem("stats", "Stats", "/stats"),
    NavItem("crashes", "Crashes", "/crashes"),
    NavItem("mce", "MCE", "/mce"),
    NavItem("thermal", "Thermal", "/thermal"),
    NavItem("population", "Population", "/population"),
)


def when(ts: float | None) -> str:
    """Format epoch seconds as a UTC date and time."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def make_environment(
    plugin_templates: dict[str, Path], source_templates: Mapping[str, Path] | None = None
) -> Environment:
    """Build the template environment: core templates, ``<plugin>/...`` and ``<source>/...``.

    A source's templates may extend ``base.html`` and import ``_macros.html``.
    """
    loader = ChoiceLoader(
        [
            FileSystemLoader(TEMPLATES),
            PrefixLoader({name: FileSystemLoader(path) for name, path in plugin_templates.items()}),
            PrefixLoader(
                {name: FileSystemLoader(path) for name, path in (source_templates or {}).items()}
            ),
        ]
    )
    env = Environment(loader=loader, autoescape=select_autoescape(default=True))
    env.filters["when"] = when
    return env


class Web:
    """What the pages share: the template environment and the navigation bar."""

    def __init__(self, env: Environment, nav: Sequence[NavItem]) -> None:
        self.env = env
        self.nav = list(nav)

    def page(
        self,
        template: str,
        *,
        title: str,
        active: str,
        charts: Sequence[dict[str, Any]] = (),
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """Render one page with the navigation bar and its charts."""
        html = self.env.get_template(template).render(
            title=title,
            active=active,
            nav=self.nav,
            charts=list(charts),
            chart_js=CHART_JS,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": CSP})


def web_of(request: Request) -> Web:
    """Return the app's :class:`Web`."""
    web: Web = request.app.state.web
    return web


def twin(data: Any) -> Response:
    """Return the JSON twin of a page."""
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), media_type="application/json"
    )


def chart(
    chart_id: str,
    kind: str,
    labels: Sequence[Any],
    datasets: dict[str, Sequence[int | float]],
    *,
    title: str = "",
    stacked: bool = False,
) -> dict[str, Any]:
    """Describe one chart for ``static/js/charts.js``."""
    return {
        "id": chart_id,
        "type": kind,
        "title": title,
        "stacked": stacked,
        "labels": list(labels),
        "datasets": [{"label": k, "data": list(v)} for k, v in datasets.items()],
    }
