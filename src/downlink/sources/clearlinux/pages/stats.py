"""Stats: classification and platform breakdowns, records per day and per severity."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from downlink.sources.clearlinux.analytics import FRESH, reads_of
from downlink.store.queries.period import day_date
from downlink.web import params
from downlink.web.rendering import chart, partial_marks, records_href
from downlink.web.views import Csv, View, router_of

SEVERITY_NAMES = {1: "1 low", 2: "2 medium", 3: "3 high", 4: "4 critical"}

DEFAULT_DAYS = 30
PIE_SLICES = 12


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    f = params.rollup_filter(query)
    reads = reads_of(request)
    raw = await reads.read(reads.stats, period, f)
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


FILTERS = ("source", "classification", "build", "platform", "severity")


def _page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The charts; every slice, bar and point leads to the records it counts, with the
    page's period and filters kept."""
    kept = {k: request.query_params.get(k, "") for k in FILTERS}
    period = data["period"]

    def records(within: dict[str, str] = period, **narrower: Any) -> str:
        return records_href(within, **{**kept, **narrower})

    cl, cv = _pie(data["classifications"], "classification")
    pl, pv = _pie(data["platforms"], "platform")
    severities = data["severities"]
    charts = [
        chart(
            "chart-classes",
            "pie",
            cl,
            {"Records": cv},
            title="Classification",
            links=[records(classification=c) if c != "other" else "" for c in cl],
        ),
        chart(
            "chart-platforms",
            "pie",
            pl,
            {"Records": pv},
            title="Platform",
            links=[records(platform=p) if p and p != "other" else "" for p in pl],
        ),
        chart(
            "chart-days",
            "line",
            partial_marks([d["day"] for d in data["per_day"]], data["period"]),
            {"Records": [d["records"] for d in data["per_day"]]},
            title="Records per day",
            x_title="Day (UTC, of reception)",
            y_title="Records",
            links=[records({"from": d["day"], "to": d["day"]}) for d in data["per_day"]],
        ),
        chart(
            "chart-severities",
            "bar",
            [SEVERITY_NAMES.get(int(x["severity"]), str(x["severity"])) for x in severities],
            {"Records": [x["records"] for x in severities]},
            title="Records per severity",
            x_title="Severity",
            y_title="Records",
            links=[records(severity=x["severity"]) for x in severities],
            severity={name: level for level, name in SEVERITY_NAMES.items()},
        ),
    ]
    return {"charts": charts}


CSV_COLUMNS = ("dimension", "value", "records")


def _csv_rows(data: dict[str, Any]) -> list[tuple[str, Any, int]]:
    """Every breakdown in one table: (classification | platform | severity, value, n)."""
    return [
        (dim, item[dim], item["records"])
        for dim, key in (
            ("classification", "classifications"),
            ("platform", "platforms"),
            ("severity", "severities"),
        )
        for item in data[key]
    ]


# The breakdown charts and tables; JSON twin, and the breakdowns as one CSV table.
VIEW = View(
    "/stats",
    "Stats",
    "clearlinux/stats.html",
    _data,
    active="stats",
    page=_page,
    fresh=FRESH,
    csv=Csv("stats", CSV_COLUMNS, _csv_rows),
)
router = router_of([VIEW])
