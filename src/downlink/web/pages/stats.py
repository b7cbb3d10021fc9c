"""Stats: classification and platform breakdowns, records per day and per severity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.store.queries import stats
from downlink.store.queries.period import Period, RollupFilter, day_date
from downlink.web import params, reads
from downlink.web.rendering import chart, records_href, shows_errors, twin, web_of

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 30
PIE_SLICES = 12


def _all(conn: Any, period: Period, f: RollupFilter) -> dict[str, Any]:
    return {
        "classifications": stats.by_classification(conn, period, f),
        "platforms": stats.by_platform(conn, period, f),
        "severities": stats.by_severity(conn, period, f),
        "per_day": stats.per_day(conn, period, f),
    }


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    f = params.rollup_filter(query)
    raw = await reads.read(request, _all, "stats", period, f)
    return {
        "period": period.as_json(),
        "classifications": [{"classification": k, "records": n} for k, n in raw["classifications"]],
        "platforms": [{"platform": k, "records": n} for k, n in raw["platforms"]],
        "severities": [{"severity": k, "records": n} for k, n in raw["severities"]],
        "per_day": [{"day": day_date(d).isoformat(), "records": n} for d, n in raw["per_day"]],
    }


def _pie(items: list[dict[str, Any]], key: str) -> tuple[list[str], list[int]]:
    head = items[:PIE_SLICES]
    labels = [i[key] for i in head]
    values = [i["records"] for i in head]
    rest = sum(i["records"] for i in items[PIE_SLICES:])
    if rest:
        labels.append("other")
        values.append(rest)
    return labels, values


@router.get("/stats")
@shows_errors("stats.html", "Stats", "stats")
async def stats_page(request: Request) -> Response:
    """Render the breakdown charts and tables."""
    data = await _data(request)
    cl, cv = _pie(data["classifications"], "classification")
    pl, pv = _pie(data["platforms"], "platform")
    charts = [
        chart(
            "chart-classes",
            "pie",
            cl,
            {"Records": cv},
            title="Classification",
            links=[records_href(data["period"], classification=c) if c != "other" else ""
                   for c in cl],
        ),
        chart("chart-platforms", "pie", pl, {"Records": pv}, title="Platform"),
        chart(
            "chart-days",
            "line",
            [d["day"] for d in data["per_day"]],
            {"Records": [d["records"] for d in data["per_day"]]},
            title="Records per day",
            x_title="Day (UTC, of reception)",
            y_title="Records",
        ),
    ]
    return web_of(request).page(
        "stats.html",
        title="Stats",
        active="stats",
        charts=charts,
        data=data,
        form=dict(request.query_params),
    )


@router.get("/stats.json")
async def stats_json(request: Request) -> Response:
    """JSON twin of /stats."""
    return twin(await _data(request))
