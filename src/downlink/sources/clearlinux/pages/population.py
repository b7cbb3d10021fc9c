"""Population: unique machines per OS build over time."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.errors import BadRequest
from downlink.sources.clearlinux.analytics import FRESH, reads_of
from downlink.sources.clearlinux.queries.population import BUCKETS
from downlink.web import params
from downlink.web.rendering import (
    blank,
    chart,
    csv_twin,
    freshness,
    partial_marks,
    shows_errors,
    twin,
    web_of,
)

router = APIRouter(include_in_schema=False)

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


@router.get("/population")
@shows_errors("clearlinux/population.html", "Population", "population")
async def population_page(request: Request) -> Response:
    """Render unique machines per build per bucket, as stacked columns."""
    data = await _data(request)
    # The bucket holding today is still filling: say so rather than show a dip.
    labels = partial_marks(data["buckets"], data["period"])
    charts = [
        chart(
            "chart-population",
            "bar",
            labels,
            stacks(data),
            title="Machines per build",
            stacked=True,
            x_title=data["bucket"].capitalize(),
            y_title="Machines (sum over builds)",
        )
    ]
    form = dict(request.query_params)
    return web_of(request).page(
        "clearlinux/population.html",
        fresh=freshness(request, *FRESH),
        title="Population",
        active="population",
        charts=charts,
        data=data,
        form=form,
        json_href="/population.json?" + urlencode(form),
        bucket_sizes=BUCKETS,
    )


@router.get("/population.json")
async def population_json(request: Request) -> Response:
    """JSON twin of /population."""
    return twin(await _data(request))


@router.get("/population.csv")
async def population_csv(request: Request) -> Response:
    """CSV of /population: one row per build (blank is "(none)"), one column per bucket."""
    data = await _data(request)
    rows = [(label(b), *data["series"][b]) for b in data["builds"]]
    return csv_twin("population", ("build", *data["buckets"]), rows)
