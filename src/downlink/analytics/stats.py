"""The Stats dashboard on ClickHouse: its four breakdowns straight from ``records``.

The SQL store answers from the daily rollups (:mod:`downlink.store.queries.stats`);
ClickHouse aggregates the period's records themselves, which is what a columnar store
is for: the same numbers (a record counts on the UTC day of its reception), the same
order (most first, then by name; severities and days ascending). Filters are the
rollup dimensions, with the same ``*`` wildcards.
"""

from __future__ import annotations

from typing import Any

from downlink.analytics.client import Analytics
from downlink.store.queries.patterns import is_pattern, like_pattern
from downlink.store.queries.period import Period, RollupFilter

_DIMENSIONS = ("source", "classification", "build", "host_type", "severity")


def _where(period: Period, f: RollupFilter) -> tuple[str, dict[str, Any]]:
    terms = ["intDiv(toInt64(ts_reception), 86400) BETWEEN {first:Int64} AND {last:Int64}"]
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


def dashboard(ch: Analytics, period: Period, f: RollupFilter) -> dict[str, Any]:
    """What ``web/pages/stats.py`` shows: the twin of its SQL ``_all``."""
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
