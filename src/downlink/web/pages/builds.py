"""Builds: records per OS build, integer builds in numeric order then the others."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.store.queries.builds import records_per_build
from downlink.web import params, reads
from downlink.web.rendering import blank, chart, csv_twin, records_href, shows_errors, twin, web_of

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 30


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    f = params.rollup_filter(query)
    rows = await reads.read(request, records_per_build, "builds", period, f)
    return {
        "period": period.as_json(),
        "builds": [{"build": b, "records": n} for b, n in rows],
        "total": sum(n for _, n in rows),
    }


@router.get("/builds")
@shows_errors("builds.html", "Builds", "builds")
async def builds_page(request: Request) -> Response:
    """Render records per build as a column chart and a table."""
    data = await _data(request)
    builds = data["builds"]
    charts = [
        chart(
            "chart-builds",
            "bar",
            [blank(b["build"]) for b in builds],
            {"Records": [b["records"] for b in builds]},
            title="Records per build",
            x_title="Build",
            y_title="Records",
            links=[records_href(data["period"], build=b["build"]) if b["build"] else ""
                   for b in builds],
        )
    ]
    return web_of(request).page(
        "builds.html",
        title="Builds",
        active="builds",
        charts=charts,
        data=data,
        form=dict(request.query_params),
    )


@router.get("/builds.json")
async def builds_json(request: Request) -> Response:
    """JSON twin of /builds."""
    return twin(await _data(request))


@router.get("/builds.csv")
async def builds_csv(request: Request) -> Response:
    """CSV of /builds: build, records."""
    data = await _data(request)
    rows = ((b["build"], b["records"]) for b in data["builds"])
    return csv_twin("builds", ("build", "records"), rows)
