"""Clear Linux's dashboards on whichever store serves them: Stats, Builds, Population.

The SQL store answers from the rollups kept by the post-ack consumers
(:mod:`.queries.stats`, ``.builds``, ``.population``); ClickHouse aggregates the
period's records themselves (the core's ``records`` table there), which is what a
columnar store is for: the same numbers (a record counts on the UTC day of its
reception; a machine once per day, ISO week or calendar month), in the same order.
Filters are the rollup dimensions, with the same ``*`` wildcards.

:class:`Reads` names the three questions once; :func:`reads_of` gives the SQL
functions with the store's ``read`` or, when ``DOWNLINK_ANALYTICS_URL`` is set, their
ClickHouse twins below (``Source.analytics_reads``), so the pages never branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import HTTPConnection

from downlink.analytics.client import Analytics
from downlink.sources.clearlinux.queries import builds as sql_builds
from downlink.sources.clearlinux.queries import population as sql_population
from downlink.sources.clearlinux.queries import stats as sql_stats
from downlink.sources.clearlinux.queries.population import _GRAIN, _period_key, buckets
from downlink.sources.clearlinux.wire import SOURCE
from downlink.sources.runtime import analytics_of, store_of
from downlink.store.queries.patterns import is_pattern, like_pattern
from downlink.store.queries.period import Period, RollupFilter, build_sort_key, day_date

# What the dashboards' freshness mark follows: the rollups' consumer on the SQL store,
# the records' shipper on ClickHouse (a consumer that is not running is left out).
FRESH = ("clearlinux_rollups", "analytics_records")

_FOUR_DAYS = timedelta(days=4)
_DIMENSIONS = ("source", "classification", "build", "host_type", "severity")


# What the rollups count: this source's records, not those stored flagged.
COUNTED = f"source = '{SOURCE}' AND NOT ifNull(sender_flagged, false)"


def _where(period: Period, f: RollupFilter) -> tuple[str, dict[str, Any]]:
    terms = [
        "intDiv(toInt64(ts_reception), 86400) BETWEEN {first:Int64} AND {last:Int64}",
        COUNTED,
    ]
    params: dict[str, Any] = {"first": period.first, "last": period.last}
    for name in _DIMENSIONS:
        value = getattr(f, name)
        if value is None:
            continue
        if isinstance(value, str) and is_pattern(value):
            terms.append(f"{name} LIKE {{{name}:String}}")
            params[name] = like_pattern(value)
        else:
            kind = "String" if isinstance(value, str) else "Int32"
            terms.append(f"{name} = {{{name}:{kind}}}")
            params[name] = value
    return " WHERE " + " AND ".join(terms), params


def sql_all_stats(conn: Any, period: Period, f: RollupFilter) -> dict[str, Any]:
    """What the Stats page shows, from the rollups."""
    return {
        "classifications": sql_stats.by_classification(conn, period, f),
        "platforms": sql_stats.by_platform(conn, period, f),
        "severities": sql_stats.by_severity(conn, period, f),
        "per_day": sql_stats.per_day(conn, period, f),
    }


def stats(ch: Analytics, period: Period, f: RollupFilter) -> dict[str, Any]:
    """What the Stats page shows: the twin of :func:`sql_all_stats`."""
    where, params = _where(period, f)
    table = f"{ch.table('records')} FINAL"

    def pairs(column: str, order: str) -> list[tuple[Any, int]]:
        sql = (f"SELECT {column}, count() AS n FROM {table}{where} "
               f"GROUP BY {column} ORDER BY {order}")
        return [(k, int(n)) for k, n in ch.query(sql, params)]

    return {
        "classifications": [(str(k), n) for k, n in pairs("classification", "n DESC, 1")],
        "platforms": [(str(k), n) for k, n in pairs("host_type", "n DESC, 1")],
        "severities": [(int(k), n) for k, n in pairs("severity", "1")],
        "per_day": [
            (int(k), n) for k, n in pairs("intDiv(toInt64(ts_reception), 86400)", "1")
        ],
    }


def records_per_build(ch: Analytics, period: Period, f: RollupFilter) -> list[tuple[str, int]]:
    """(build, records), integer builds in numeric order first (Builds)."""
    where, params = _where(period, f)
    sql = f"SELECT build, count() FROM {ch.table('records')} FINAL{where} GROUP BY build"
    rows = [(str(b), int(n)) for b, n in ch.query(sql, params)]
    return sorted(rows, key=lambda r: build_sort_key(r[0]))


_KEY = {
    "d": "intDiv(toInt64(ts_reception), 86400)",
    # the Monday of the day's week, as a day number (rollups.week_of)
    "w": "intDiv(toInt64(ts_reception), 86400)"
         " - ((intDiv(toInt64(ts_reception), 86400) + 3) % 7)",
    "m": "toYYYYMM(toDateTime(toUInt32(ts_reception), 'UTC'))",
}


def machines_per_build(
    ch: Analytics, period: Period, size: str, build: str | None = None
) -> dict[str, object]:
    """Unique machines per build and bucket (Population); buckets are whole weeks and
    months, like the rollup's."""
    parts = buckets(period, size)
    index: dict[int, int] = {}
    for i, part in enumerate(parts):
        first = part.first if size != "week" else part.first - day_date(part.first).weekday()
        index[_period_key(size, first)] = i
    lo, hi = parts[0].first, parts[-1].last
    if size == "week":
        lo -= day_date(lo).weekday()
        hi += 6 - day_date(hi).weekday()
    elif size == "month":
        lo = lo - day_date(lo).day + 1
        nxt = day_date(hi).replace(day=28) + _FOUR_DAYS
        hi = hi + (nxt.replace(day=1) - day_date(hi)).days - 1
    key = _KEY[_GRAIN[size]]
    sql = (
        f"SELECT {key} AS k, build, uniqExact(machine_id) FROM {ch.table('records')} FINAL "
        "WHERE intDiv(toInt64(ts_reception), 86400) BETWEEN {lo:Int64} AND {hi:Int64} "
        f"AND {COUNTED}"
    )
    params: dict[str, Any] = {"lo": lo, "hi": hi}
    if build is not None:
        sql += " AND build = {build:String}"
        params["build"] = build
    counts: dict[str, list[int]] = {}
    for k, b, n in ch.query(sql + " GROUP BY k, build", params):
        if int(k) in index:
            counts.setdefault(str(b), [0] * len(parts))[index[int(k)]] = int(n)
    builds = sorted(counts, key=build_sort_key)
    return {
        "bucket": size,
        "buckets": [p.label for p in parts],
        "builds": builds,
        "series": {b: counts[b] for b in builds},
    }


@dataclass(frozen=True)
class Reads:
    """``read(fn, *args)`` runs ``fn(handle, *args)`` off the event loop."""

    read: Callable[..., Awaitable[Any]]
    stats: Callable[..., dict[str, Any]]
    builds: Callable[..., list[tuple[str, int]]]
    population: Callable[..., dict[str, object]]


@dataclass(frozen=True)
class ClickHouseReads:
    """The source's reads on ClickHouse (``Source.analytics_reads``): the dashboards';
    the crash and MCE pages build theirs from ``ch`` (:mod:`.crash_analytics`,
    :mod:`.mce_analytics`)."""

    ch: Analytics
    dashboards: Reads


def reads(ch: Analytics) -> ClickHouseReads:
    """The source's reads on ClickHouse (``Source.analytics_reads``)."""
    return ClickHouseReads(ch, Reads(ch.read, stats, records_per_build, machines_per_build))


def reads_of(request: HTTPConnection) -> Reads:
    """ClickHouse's reads when configured, else the SQL store's (the rollups)."""
    found: ClickHouseReads | None = analytics_of(request, SOURCE)
    if found is not None:
        return found.dashboards
    return Reads(
        store_of(request).read,
        sql_all_stats,
        sql_builds.records_per_build,
        sql_population.machines_per_build,
    )
