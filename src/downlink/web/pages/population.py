"""Population: unique machines per OS build over time."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.api.errors import BadRequest
from downlink.store.database import Store
from downlink.store.queries.population import BUCKETS, machines_per_build
from downlink.web import params
from downlink.web.rendering import chart, twin, web_of

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 28
MAX_BUCKETS = 400
CHART_BUILDS = 12


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    size = query.get("bucket") or "day"
    if size not in BUCKETS:
        raise BadRequest("bucket must be day, week or month")
    if size == "day" and period.days > MAX_BUCKETS:
        raise BadRequest(f"at most {MAX_BUCKETS} daily buckets: choose week or month")
    build = params.text(query, "build")
    store: Store = request.app.state.store
    result = await store.read(machines_per_build, period, size, build)
    return {"period": period.as_json(), **result}


@router.get("/population")
async def population_page(request: Request) -> Response:
    """Render unique machines per build per bucket, as stacked columns."""
    data = await _data(request)
    builds = data["builds"][-CHART_BUILDS:]
    charts = [
        chart(
            "chart-population",
            "bar",
            data["buckets"],
            {b: data["series"][b] for b in builds},
            title="Machines per build",
            stacked=True,
        )
    ]
    form = dict(request.query_params)
    return web_of(request).page(
        "population.html",
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
