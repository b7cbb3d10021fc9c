"""The MCE and Thermal pages on whichever store serves them.

The SQL store answers from the MCE rollups (:mod:`.queries.mce`); ClickHouse counts the
period's records themselves (the core's ``records`` table there): the same numbers in
the same order, the MCE status read from the payload with the rollup's own pattern
(:data:`~downlink.sources.clearlinux.rollups._MCE_STATUS`, RE2 and Python agree on it),
top machines over the whole weeks the period touches, as the weekly rollup has them,
the status list cut as the SQL store's is (:func:`.queries.mce_statuses.listed`).
Nothing here is derived state of the SQL store: no join is needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from downlink.analytics.client import Analytics
from downlink.sources.clearlinux.analytics import COUNTED, FRESH
from downlink.sources.clearlinux.mce import MCE_CLASSES, THERMAL_CLASS
from downlink.sources.clearlinux.queries.mce import (
    _week_labels,
    mce_summary,
    thermal_weekly,
    week_of,
)
from downlink.sources.clearlinux.queries.mce_statuses import listed
from downlink.sources.clearlinux.rollups import _MCE_STATUS
from downlink.sources.clearlinux.wire import SOURCE
from downlink.sources.runtime import analytics_of, store_of
from downlink.store.queries.period import Period, build_sort_key, day_date

__all__ = ["FRESH", "MceReads", "mce", "mce_reads_of", "thermal"]

_DAY = "intDiv(toInt64(ts_reception), 86400)"
_STATUS = "lower(extract(payload, {status:String}))"


def _conditions(
    lo: int, hi: int, classes: tuple[str, ...], build: str | None
) -> tuple[str, dict[str, Any]]:
    sql = (f" WHERE {_DAY} BETWEEN {{lo:Int64}} AND {{hi:Int64}} AND {COUNTED} "
           "AND classification IN {classes:Array(String)}")
    params: dict[str, Any] = {"lo": lo, "hi": hi, "classes": list(classes)}
    if build is not None:
        sql += " AND build = {build:String}"
        params["build"] = build
    return sql, params


def mce(ch: Analytics, period: Period, build: str | None = None, top: int = 20) -> dict[str, Any]:
    """The twin of :func:`.queries.mce.mce_summary`."""
    table = f"{ch.table('records')} FINAL"
    where, params = _conditions(period.first, period.last, MCE_CLASSES, build)
    params["status"] = _MCE_STATUS.pattern
    weeks = _week_labels(period)
    weekly: dict[str, list[int]] = {c: [0] * len(weeks) for c in MCE_CLASSES}
    totals: dict[str, dict[str, int]] = {"class": {}, "build": {}, "status": {}}
    sql = (f"SELECT {_DAY} AS day, classification, build, {_STATUS} AS status, count() "
           f"FROM {table}{where} GROUP BY day, classification, build, status")
    for day, cls, b, status, n in ch.query(sql, params):
        weekly[str(cls)][(week_of(int(day)) - weeks[0]) // 7] += int(n)
        for what, key in (("class", str(cls)), ("build", str(b)), ("status", str(status))):
            totals[what][key] = totals[what].get(key, 0) + int(n)

    def grouped(what: str) -> list[tuple[str, int]]:
        return sorted(totals[what].items(), key=lambda kv: (-kv[1], kv[0]))

    # Top machines: whole weeks, from the Monday of the first day's week to the Sunday
    # of the last week starting in the period (the weekly rollup's rows).
    lo = week_of(period.first)
    hi = week_of(period.last) + 6
    where, params = _conditions(lo, hi, MCE_CLASSES, build)
    sql = (f"SELECT machine_id, count() AS n, uniqExact(build) FROM {table}{where} "
           f"GROUP BY machine_id ORDER BY n DESC, machine_id LIMIT {int(top)}")
    leaders = ch.query(sql, params)
    return {
        "weeks": [day_date(w).isoformat() for w in weeks],
        "weekly": weekly,
        "by_class": grouped("class"),
        "by_build": sorted(grouped("build"), key=lambda kv: build_sort_key(kv[0])),
        "by_status": listed(totals["status"], sum(totals["class"].values())),
        "top_machines": [
            {"machine_id": str(m), "count": int(n), "builds": int(b)} for m, n, b in leaders
        ],
    }


def thermal(ch: Analytics, period: Period) -> dict[str, Any]:
    """The twin of :func:`.queries.mce.thermal_weekly`."""
    weeks = _week_labels(period)
    counts = [0] * len(weeks)
    where, params = _conditions(period.first, period.last, (THERMAL_CLASS,), None)
    sql = f"SELECT {_DAY} AS day, count() FROM {ch.table('records')} FINAL{where} GROUP BY day"
    for day, n in ch.query(sql, params):
        counts[(week_of(int(day)) - weeks[0]) // 7] += int(n)
    return {"weeks": [day_date(w).isoformat() for w in weeks], "counts": counts}


@dataclass(frozen=True)
class MceReads:
    """``read(fn, *args)`` runs ``fn(handle, *args)`` off the event loop."""

    read: Callable[..., Awaitable[Any]]
    mce: Callable[..., dict[str, Any]]
    thermal: Callable[..., dict[str, Any]]


def mce_reads_of(request: HTTPConnection) -> MceReads:
    """ClickHouse's reads when configured, else the SQL store's (the MCE rollups)."""
    found = analytics_of(request, SOURCE)
    if found is not None:
        ch: Analytics = found.ch
        return MceReads(ch.read, mce, thermal)
    return MceReads(store_of(request).read, mce_summary, thermal_weekly)
