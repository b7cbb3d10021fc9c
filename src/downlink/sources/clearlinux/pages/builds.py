"""Builds: records per OS build, integer builds in numeric order then the others."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from downlink.sources.clearlinux.analytics import FRESH, reads_of
from downlink.web import params
from downlink.web.rendering import blank, chart, records_href
from downlink.web.views import Csv, View, router_of

DEFAULT_DAYS = 30


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    f = params.rollup_filter(query)
    reads = reads_of(request)
    rows = await reads.read(reads.builds, period, f)
    return {
        "period": period.as_json(),
        "builds": [{"build": b, "records": n} for b, n in rows],
        "total": sum(n for _, n in rows),
    }


def _page(_request: Request, data: dict[str, Any]) -> dict[str, Any]:
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
    return {"charts": charts}


def _csv_rows(data: dict[str, Any]) -> list[tuple[str, int]]:
    return [(b["build"], b["records"]) for b in data["builds"]]


# Records per build as a column chart and a table; JSON and CSV (build, records) twins.
VIEW = View(
    "/builds",
    "Builds",
    "clearlinux/builds.html",
    _data,
    active="builds",
    page=_page,
    fresh=FRESH,
    csv=Csv("builds", ("build", "records"), _csv_rows),
)
router = router_of([VIEW])
