"""Jinja environment, navigation and the page / JSON-twin responses every view uses.

Templates are autoescaped: record payloads and every other stored value are
untrusted. HTML pages also carry a Content-Security-Policy that only lets the
server's own scripts run, so an injected ``<script>`` would stay inert even if
escaping were ever bypassed.
"""

from __future__ import annotations

import csv
import io
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from jinja2 import (
    ChainableUndefined,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    select_autoescape,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from downlink.web import svg
from downlink.web.params import PRESETS

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
CHART_JS = "chart-4.6.1.umd.min.js"
SWAGGER_UI = "swagger-ui-5.35.0"  # swagger-ui-dist from npm: bundle, CSS, licence

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
    keeps_period: bool = True  # the page takes from/to/range: the bar carries them to it


# The core's tabs: the record log first, the API description after the sources' tabs
# (each source brings its own: ``Source.nav``), then the plug-in views'.
CORE_NAV: tuple[NavItem, ...] = (NavItem("records", "Records", "/records", keeps_period=False),)
CORE_NAV_LAST: tuple[NavItem, ...] = (NavItem("docs", "API", "/docs", keeps_period=False),)


def when(ts: float | None) -> str:
    """Format epoch seconds as a UTC date and time."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


NONE = "(none)"


def blank(value: Any) -> Any:
    """Show an empty value (a blank build, platform) as "(none)"."""
    return NONE if value is None or value == "" else value


def signal_name(number: Any) -> str:
    """A Linux signal number with its name: ``11 (SIGSEGV)``."""
    try:
        return f"{number} ({signal.Signals(int(number)).name})"
    except (ValueError, TypeError):
        return str(number)


def num(value: Any) -> str:
    """Format a count with thousands separators (1,234,567)."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


SO_FAR = " (so far)"
PARTIAL = " (partial)"


def partial_marks(
    labels: Sequence[str], period: Mapping[str, str], first_bucket_start: str | None = None
) -> list[str]:
    """Chart labels with their partial buckets marked, so a bucket still filling (or cut
    by the period) reads as such rather than as a dip: the last one "(so far)" when the
    period runs to today, the first one "(partial)" when its bucket (starting on
    ``first_bucket_start``, an ISO date) begins before the period."""
    out = list(labels)
    if not out:
        return out
    if first_bucket_start is not None and first_bucket_start < period["from"]:
        out[0] += PARTIAL
    if period["to"] >= datetime.now(UTC).date().isoformat():
        out[-1] += SO_FAR
    return out


def records_href(period: Mapping[str, str] | None = None, **filters: Any) -> str:
    """``/records`` filtered by ``filters``, received within the dashboard's ``period``."""
    query = {k: v for k, v in filters.items() if v not in (None, "")}
    if period:
        query["since"] = period["from"] + "T00:00"
        query["until"] = period["to"] + "T23:59:59.999"
    return "/records?" + urlencode(query)


def week_period(monday: str, period: Mapping[str, str]) -> dict[str, str]:
    """The days of the week starting on ``monday`` (ISO) within ``period``: a weekly
    bucket's records."""
    start = datetime.fromisoformat(monday).date()
    end = (start + timedelta(days=6)).isoformat()
    return {"from": max(monday, period["from"]), "to": min(end, period["to"])}


PERIOD_PARAMS = ("from", "to", "range")
# What a preset replaces: the period in any spelling (OONI's ``since``/``until``) and the
# position in a paged list.
PRESET_DROPS = (*PERIOD_PARAMS, "since", "until", "offset", "before", "cursor")


def preset_href(form: Mapping[str, str], name: str) -> str:
    """This page with the time-range preset ``name`` instead of its period (first page)."""
    kept = {k: v for k, v in form.items() if v and k not in PRESET_DROPS}
    return "?" + urlencode({**kept, "range": name})


def period_query(form: Mapping[str, str]) -> str:
    """The period of a page's query (``range`` or ``from``/``to``), to carry to other pages."""
    return urlencode({k: form[k] for k in PERIOD_PARAMS if form.get(k)})


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
    env.filters["blank"] = blank
    env.filters["num"] = num
    env.filters["signal"] = signal_name
    env.filters["spark_points"] = svg.spark_points
    env.filters["share_bar"] = svg.share_bar
    env.globals["presets"] = PRESETS
    env.globals["preset_href"] = preset_href
    env.globals["records_href"] = records_href
    return env


class Web:
    """What the pages share: the template environment and the navigation bar."""

    def __init__(self, env: Environment, nav: Sequence[NavItem]) -> None:
        self.env = env
        # A page answering a refusal has no results: names only the results would have
        # (``data.period``, ``view.name``) render empty instead of failing.
        self.lenient_env = env.overlay(undefined=ChainableUndefined)
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
        env = self.lenient_env if "error" in context else self.env
        keep = period_query(context.get("form") or {})
        html = env.get_template(template).render(
            title=title,
            active=active,
            nav=self.nav,
            nav_query=keep,
            charts=list(charts),
            chart_js=CHART_JS,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": CSP})


def freshness(request: Request, *consumers: str) -> dict[str, Any] | None:
    """How fresh a page's derived data is: the lag of the ``consumers`` that maintain
    it (``ConsumerRunner.freshness``), for the page's freshness mark (``fresh=``)."""
    runner = getattr(request.app.state, "consumer_runner", None)
    if runner is None:
        return None
    found: dict[str, Any] | None = runner.freshness(consumers)
    return found


def web_of(request: Request) -> Web:
    """Return the app's :class:`Web`."""
    web: Web = request.app.state.web
    return web


def twin(data: Any) -> Response:
    """Return the JSON twin of a page."""
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), media_type="application/json"
    )


def csv_twin(name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """Return a page's table as CSV (a download named ``name.csv``).

    Text cells starting with ``=``, ``+``, ``-``, ``@`` or a control character get a
    leading ``'`` so a spreadsheet shows them instead of running them as formulas
    (records are untrusted); numbers are written as they are.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def chart(
    chart_id: str,
    kind: str,
    labels: Sequence[Any],
    datasets: Mapping[str, Sequence[int | float]],
    *,
    title: str = "",
    stacked: bool = False,
    x_title: str = "",
    y_title: str = "",
    links: Sequence[str] | None = None,
    severity: Mapping[str, int] | None = None,
    cell_links: Mapping[str, Sequence[str]] | None = None,
    legend_links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Describe one chart for ``static/js/charts.js`` (axis titles for bar and line).

    ``severity`` maps labels (slices, bars) or dataset names to a severity, 1 to 4:
    those take the severity palette that table cells use (``--sev-N`` in the CSS).

    Where a click leads (``""``: nowhere): ``links`` one per label (a bar, a slice, a
    point; for a pie also its legend entry); ``cell_links`` per dataset name, one per
    label (a stacked bar's segments, a line's points: the dataset's own filter in that
    label's bucket); ``legend_links`` per dataset name, for the legend entries of a bar
    or line chart. A legend entry without a link keeps Chart.js's toggle.
    """
    return {
        "id": chart_id,
        "type": kind,
        "title": title,
        "stacked": stacked,
        "x_title": x_title,
        "y_title": y_title,
        "labels": list(labels),
        "datasets": [{"label": k, "data": list(v)} for k, v in datasets.items()],
        **({"links": list(links)} if links is not None else {}),
        **({"severity": dict(severity)} if severity is not None else {}),
        **(
            {"cell_links": [list(cell_links.get(k, ())) for k in datasets]}
            if cell_links is not None
            else {}
        ),
        **(
            {"legend_links": [legend_links.get(k, "") for k in datasets]}
            if legend_links is not None
            else {}
        ),
    }
