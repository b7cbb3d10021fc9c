"""MCE and Thermal: machine-check and thermal events from the patched mcelog records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.store.database import Store
from downlink.store.queries.mce import mce_summary, thermal_weekly
from downlink.store.queries.period import Period, day_number, today
from downlink.web import params
from downlink.web.rendering import chart, shows_errors, twin, web_of

router = APIRouter(include_in_schema=False)

THERMAL_WEEKS = 5


def _mce_period(query: dict[str, str]) -> Period:
    # telemetryui's default: from January 1st of the current year.
    jan1 = day_number(datetime.now(UTC).date().replace(month=1, day=1))
    return params.period(query, today() - jan1 + 1)


async def _mce(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = _mce_period(query)
    build = params.text(query, "build")
    top = params.integer(query, "top", 1, 500) or 20
    store: Store = request.app.state.store
    summary = await store.read(mce_summary, period, build, top)
    return {"period": period.as_json(), "build": build, **summary}


@router.get("/mce")
@shows_errors("mce.html", "Machine-check events", "mce")
async def mce_page(request: Request) -> Response:
    """Render weekly MCE counts per class, and counts by class, build and status."""
    data = await _mce(request)
    charts = [
        chart(
            "chart-weekly",
            "line",
            data["weeks"],
            {cls.rsplit("/", 1)[-1]: n for cls, n in data["weekly"].items()},
            title="MCE per week",
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
            [b for b, _ in data["by_build"]],
            {"Events": [n for _, n in data["by_build"]]},
            title="By build",
        ),
        chart(
            "chart-status",
            "bar",
            [s or "(none)" for s, _ in data["by_status"]],
            {"Events": [n for _, n in data["by_status"]]},
            title="By MCE status",
        ),
    ]
    form = dict(request.query_params)
    return web_of(request).page(
        "mce.html",
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
    store: Store = request.app.state.store
    return {"period": period.as_json(), **(await store.read(thermal_weekly, period))}


@router.get("/thermal")
@shows_errors("thermal.html", "Thermal events", "thermal")
async def thermal_page(request: Request) -> Response:
    """Render thermal events per week."""
    data = await _thermal(request)
    charts = [
        chart(
            "chart-thermal",
            "bar",
            data["weeks"],
            {"Thermal events": data["counts"]},
            title="Thermal events per week",
        )
    ]
    form = dict(request.query_params)
    return web_of(request).page(
        "thermal.html",
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
