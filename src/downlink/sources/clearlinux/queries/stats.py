"""Classification, platform and per-day breakdowns, from the daily rollup."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from downlink.sources.clearlinux.queries.cubes import cube_for
from downlink.store.queries.period import Period, RollupFilter


def _breakdown(
    conn: Connection, name: str, period: Period, f: RollupFilter
) -> list[tuple[str, int]]:
    t = cube_for({name} | f.columns())
    column = t.c[name]
    total = func.sum(t.c.count)
    stmt = select(column, total).group_by(column).order_by(total.desc(), column)
    stmt = f.where(period.where(stmt, t), t)
    return [(str(row[0]), int(row[1])) for row in conn.execute(stmt)]


def by_classification(conn: Connection, period: Period, f: RollupFilter) -> list[tuple[str, int]]:
    """Return (classification, records), most frequent first."""
    return _breakdown(conn, "classification", period, f)


def by_platform(conn: Connection, period: Period, f: RollupFilter) -> list[tuple[str, int]]:
    """Return (host_type ``sys_vendor|product_name|product_version``, records)."""
    return _breakdown(conn, "host_type", period, f)


def by_severity(conn: Connection, period: Period, f: RollupFilter) -> list[tuple[int, int]]:
    """Return (severity, records) in severity order."""
    t = cube_for({"severity"} | f.columns())
    stmt = select(t.c.severity, func.sum(t.c.count)).group_by(t.c.severity).order_by(t.c.severity)
    stmt = f.where(period.where(stmt, t), t)
    return [(int(row[0]), int(row[1])) for row in conn.execute(stmt)]


def per_day(conn: Connection, period: Period, f: RollupFilter) -> list[tuple[int, int]]:
    """Return (day number, records) for every day of the period that has records."""
    t = cube_for(f.columns())
    stmt = select(t.c.day, func.sum(t.c.count)).group_by(t.c.day).order_by(t.c.day)
    stmt = f.where(period.where(stmt, t), t)
    return [(int(row[0]), int(row[1])) for row in conn.execute(stmt)]
