"""The fuel-stats pages: the dashboard (``/fuel``, JSON and CSV twins) and the failure
notifications (``/fuel/failures``, JSON and CSV twins; the same data as
``/api/v1/fuel/failures``).

The dashboard is filtered by Fuel release (``release``) and by the date range
(``from``/``to``, ``YYYY-MM-DD``) in which installations last reported and action logs
arrived; without dates it covers everything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from downlink.errors import BadRequest
from downlink.sources.fuelstats import notify, reports
from downlink.sources.fuelstats.context import store
from downlink.store.queries.period import day_date
from downlink.web.params import preset_period
from downlink.web.rendering import chart, when
from downlink.web.views import Csv, View

router = APIRouter(include_in_schema=False)

PAIR_REPORTS = ("fuel_releases", "statuses", "environments_per_installation",
                "environment_sizes", "hypervisors", "operating_systems", "openstack_releases",
                "nodes_per_installation", "hardware", "role_combinations")


def _day(params: Mapping[str, str], name: str) -> dt.date | None:
    raw = params.get(name) or ""
    if not raw:
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date YYYY-MM-DD, not {raw!r}") from None


def _ts(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def report_filter(params: Mapping[str, str]) -> tuple[reports.Filter, dict[str, str]]:
    """The filter of a request and the form values to show."""
    first, last = _day(params, "from"), _day(params, "to")
    preset = params.get("range") or ""
    if first is None and last is None and preset:
        days = preset_period(preset)  # 400 naming the presets when unknown
        first, last = day_date(days.first), day_date(days.last)
    if first and last and first > last:
        raise BadRequest("from is after to")
    release = params.get("release") or None
    found = reports.Filter(
        release=release,
        since=_ts(first) if first else None,
        until=_ts(last + dt.timedelta(days=1)) if last else None,
    )
    form = {"release": release or "", "from": params.get("from") or "",
            "to": params.get("to") or "", "range": preset}
    return found, form


def _as_json(raw: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    out = dict(raw)
    for name in PAIR_REPORTS:
        out[name] = [{"label": "" if k is None else str(k), "count": v} for k, v in raw[name]]
    out["filter"] = form
    return out


async def _data(request: Request) -> dict[str, Any]:
    f, form = report_filter(request.query_params)
    return _as_json(await store(request).read(reports.everything, f), form)


def _pairs_chart(data: dict[str, Any], name: str, kind: str, title: str) -> dict[str, Any]:
    items = data[name]
    return chart(f"chart-{name}", kind, [i["label"] for i in items],
                 {"Count": [i["count"] for i in items]}, title=title)


def _charts(_request: Request, data: dict[str, Any]) -> dict[str, Any]:
    checks = data["health_checks"]
    charts = [
        _pairs_chart(data, "fuel_releases", "bar", "Installations per Fuel release"),
        _pairs_chart(data, "statuses", "bar", "Environments per status"),
        _pairs_chart(data, "environments_per_installation", "bar",
                     "Installations per number of environments"),
        _pairs_chart(data, "environment_sizes", "bar", "Operable environments per size (nodes)"),
        _pairs_chart(data, "nodes_per_installation", "bar", "Installations per number of nodes"),
        _pairs_chart(data, "hypervisors", "pie", "Hypervisors (operable environments)"),
        _pairs_chart(data, "operating_systems", "pie", "Operating systems (operable environments)"),
        _pairs_chart(data, "openstack_releases", "bar", "OpenStack releases deployed"),
        _pairs_chart(data, "role_combinations", "bar", "Node role combinations"),
        _pairs_chart(data, "hardware", "bar", "Most common hardware"),
        chart("chart-health_checks", "bar", [c["check"] for c in checks],
              {"Runs": [c["runs"] for c in checks], "Failed": [c["failed"] for c in checks]},
              title="Health checks: failed of all runs"),
    ]
    return {"charts": charts}


def _csv_rows(data: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """One ``report,label,count`` row per value of the dashboard."""
    for key, value in data["summary"].items():
        yield "summary", key, value
    for name in PAIR_REPORTS:
        for item in data[name]:
            yield name, item["label"], item["count"]
    for name in ("deployment_time", "failures_before_success"):
        for key, value in data[name].items():
            yield name, key, value
    for check in data["health_checks"]:
        yield "health_checks", f"{check['check']} runs", check["runs"]
        yield "health_checks", f"{check['check']} failed", check["failed"]


# The dashboard is a View: a refused filter (``from=bad``) is shown inside the page,
# with the form as typed, to a browser; the twins answer ``{"message": …}``.
DASHBOARD = View(
    path="/fuel",
    title="Fuel stats",
    template="fuelstats/dashboard.html",
    data=_data,
    active="fuelstats",
    page=_charts,
    csv=Csv("fuel-stats", ("report", "label", "count"), _csv_rows),
)
DASHBOARD.install(router)


async def _failures(request: Request) -> dict[str, Any]:
    return {"failures": await store(request).read(notify.outbox_page)}


FAILURE_COLUMNS = ("id", "failure_key", "master_node_uid", "action_name", "message", "channel",
                   "state", "attempts", "last_error", "created_at", "sent_at")

# Failure notifications with their delivery status; twins /fuel/failures.json (the same
# data as /api/v1/fuel/failures) and /fuel/failures.csv.
FAILURES = View(
    path="/fuel/failures",
    title="Fuel failure reports",
    template="fuelstats/failures.html",
    data=_failures,
    active="fuelstats",
    csv=Csv(
        "fuel-failures",
        FAILURE_COLUMNS,
        lambda data: [
            [when(r[c]) if c.endswith("_at") else r[c] for c in FAILURE_COLUMNS]
            for r in data["failures"]
        ],
    ),
)
FAILURES.install(router)
