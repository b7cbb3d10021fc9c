"""MCE and Thermal: machine-check and thermal events from the patched mcelog records."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.sources.clearlinux.mce_analytics import FRESH, mce_reads_of
from downlink.store.queries.period import Period
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

THERMAL_WEEKS = 5


MCE_DAYS = 90


def _mce_period(query: dict[str, str]) -> Period:
    # telemetryui started on January 1st, mostly empty weeks early in the year; 90 days
    # (13 weeks) is a steady window. Year to date is the "ytd" preset.
    return params.period(query, MCE_DAYS)


async def _mce(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = _mce_period(query)
    build = params.text(query, "build")
    top = params.integer(query, "top", 1, 500) or 20
    reads = mce_reads_of(request)
    summary = await reads.read(reads.mce, period, build, top)
    return {"period": period.as_json(), "build": build, **summary}


@router.get("/mce")
@shows_errors("clearlinux/mce.html", "Machine-check events", "mce")
async def mce_page(request: Request) -> Response:
    """Render weekly MCE counts per class, and counts by class, build and status."""
    data = await _mce(request)
    charts = [
        chart(
            "chart-weekly",
            "line",
            partial_marks(data["weeks"], data["period"], next(iter(data["weeks"]), None)),
            {cls.rsplit("/", 1)[-1]: n for cls, n in data["weekly"].items()},
            title="MCE per week",
            x_title="Week",
            y_title="Events",
        ),
        chart(
            "chart-class",
            "pie",
            [c for c, _ in data["by_class"]],
            {"Events": [n for _, n in data["by_class"]]},
            title="By class",
        ),
        chart(
            "chart-build",
            "bar",
            [blank(b) for b, _ in data["by_build"]],
            {"Events": [n for _, n in data["by_build"]]},
            title="By build",
            x_title="Build",
            y_title="Events",
        ),
        chart(
            "chart-status",
            "bar",
            [blank(s) for s, _ in data["by_status"]],
            {"Events": [n for _, n in data["by_status"]]},
            title="By MCE status",
            x_title="MCE status",
            y_title="Events",
        ),
    ]
    form = dict(request.query_params)
    return web_of(request).page(
        "clearlinux/mce.html",
        fresh=freshness(request, *FRESH),
        title="Machine-check events",
        active="mce",
        charts=charts,
        data=data,
        form=form,
        json_href="/mce.json?" + urlencode(form),
    )


@router.get("/mce.json")
async def mce_json(request: Request) -> Response:
    """JSON twin of /mce."""
    return twin(await _mce(request))


async def _thermal(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, THERMAL_WEEKS * 7)
    reads = mce_reads_of(request)
    return {"period": period.as_json(), **(await reads.read(reads.thermal, period))}


@router.get("/thermal")
@shows_errors("clearlinux/thermal.html", "Thermal events", "thermal")
async def thermal_page(request: Request) -> Response:
    """Render thermal events per week."""
    data = await _thermal(request)
    charts = [
        chart(
            "chart-thermal",
            "bar",
            partial_marks(data["weeks"], data["period"], next(iter(data["weeks"]), None)),
            {"Thermal events": data["counts"]},
            title="Thermal events per week",
            x_title="Week of (Monday)",
            y_title="Events",
        )
    ]
    form = dict(request.query_params)
    return web_of(request).page(
        "clearlinux/thermal.html",
        fresh=freshness(request, *FRESH),
        title="Thermal events",
        active="thermal",
        charts=charts,
        data=data,
        form=form,
        json_href="/thermal.json?" + urlencode(form),
    )


@router.get("/thermal.json")
async def thermal_json(request: Request) -> Response:
    """JSON twin of /thermal."""
    return twin(await _thermal(request))


@router.get("/mce.csv")
async def mce_csv(request: Request) -> Response:
    """CSV of /mce's table: the top machines."""
    data = await _mce(request)
    rows = ((m["machine_id"], m["count"], m["builds"]) for m in data["top_machines"])
    return csv_twin("mce-machines", ("machine_id", "events", "builds"), rows)


@router.get("/thermal.csv")
async def thermal_csv(request: Request) -> Response:
    """CSV of /thermal: week (its Monday), events."""
    data = await _thermal(request)
    return csv_twin("thermal", ("week", "events"), zip(data["weeks"], data["counts"], strict=True))
