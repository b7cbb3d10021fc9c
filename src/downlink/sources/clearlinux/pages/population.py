"""Population: unique machines per OS build over time."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

from starlette.requests import Request

from downlink.errors import BadRequest
from downlink.sources.clearlinux.analytics import FRESH, reads_of
from downlink.sources.clearlinux.queries.population import BUCKETS, buckets
from downlink.store.queries.period import Period, day_date, day_number
from downlink.web import params
from downlink.web.rendering import blank, chart, partial_marks, records_href
from downlink.web.views import Csv, View, router_of

DEFAULT_DAYS = 28
MAX_BUCKETS = 400
CHART_BUILDS = 10
OTHER = "other"


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    size = query.get("bucket") or "day"
    if size not in BUCKETS:
        raise BadRequest("bucket must be day, week or month")
    if size == "day" and period.days > MAX_BUCKETS:
        raise BadRequest(f"at most {MAX_BUCKETS} daily buckets: choose week or month")
    build = params.text(query, "build")
    reads = reads_of(request)
    result = await reads.read(reads.population, period, size, build)
    series = cast(dict[str, list[int]], result["series"])
    width = len(cast(list[str], result["buckets"]))
    totals = [sum(s[i] for s in series.values()) for i in range(width)]
    return {"period": period.as_json(), **result, "totals": totals}


def label(build: str) -> str:
    """How a build is shown: a blank build is "(none)"."""
    return str(blank(build))


def stacks(data: dict[str, Any], top: int = CHART_BUILDS) -> dict[str, list[int]]:
    """The chart's stacks: the ``top`` builds with the most machines, then "other".

    Every build's machines are in exactly one stack, so each column is as high as the
    table's total for that bucket.
    """
    series: dict[str, list[int]] = data["series"]
    ranked = sorted(series, key=lambda b: -sum(series[b]))
    out = {label(b): series[b] for b in ranked[:top]}
    rest = ranked[top:]
    if rest:
        out[OTHER] = [sum(series[b][i] for b in rest) for i in range(len(data["buckets"]))]
    return out


def bucket_periods(data: dict[str, Any]) -> list[dict[str, str]]:
    """The days of each bucket of the page (``from``/``to``, ISO)."""
    period = Period(day_number(date.fromisoformat(data["period"]["from"])),
                    day_number(date.fromisoformat(data["period"]["to"])))
    return [{"from": day_date(b.first).isoformat(), "to": day_date(b.last).isoformat()}
            for b in buckets(period, data["bucket"])]


def _links(data: dict[str, Any], shown: dict[str, list[int]]) -> tuple[
        dict[str, list[str]], dict[str, str]]:
    """Where a segment leads (that build's records in that bucket) and a legend entry
    (that build's records in the period); "other" and "(none)" lead nowhere."""
    builds = {label(b): b for b in data["series"] if b}
    periods = bucket_periods(data)
    cells = {name: [records_href(p, build=builds[name]) for p in periods]
             for name in shown if name in builds}
    legend = {name: records_href(data["period"], build=builds[name])
              for name in shown if name in builds}
    return cells, legend


def _page(_request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """Unique machines per build per bucket, as stacked columns; the bucket holding
    today is still filling: say so rather than show a dip."""
    shown = stacks(data)
    cells, legend = _links(data, shown)
    charts = [
        chart(
            "chart-population",
            "bar",
            partial_marks(data["buckets"], data["period"]),
            shown,
            title="Machines per build",
            stacked=True,
            x_title=data["bucket"].capitalize(),
            y_title="Machines (sum over builds)",
            cell_links=cells,
            legend_links=legend,
        )
    ]
    return {"charts": charts, "bucket_sizes": BUCKETS}


def _csv_rows(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(label(b), *data["series"][b]) for b in data["builds"]]


# The chart and the table (one row per build, blank is "(none)"; one column per bucket),
# JSON twin, and the table as CSV.
VIEW = View(
    "/population",
    "Population",
    "clearlinux/population.html",
    _data,
    active="population",
    page=_page,
    fresh=FRESH,
    csv=Csv("population", lambda data: ("build", *data["buckets"]), _csv_rows),
)
router = router_of([VIEW])
