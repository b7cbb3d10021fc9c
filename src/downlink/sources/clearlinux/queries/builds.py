"""Records per OS build, from the daily rollup."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from downlink.sources.clearlinux.queries.cubes import cube_for
from downlink.store.queries.period import Period, RollupFilter, build_sort_key


def records_per_build(conn: Connection, period: Period, f: RollupFilter) -> list[tuple[str, int]]:
    """Return (build, records) for the period, integer builds in numeric order first."""
    t = cube_for({"build"} | f.columns())
    stmt = select(t.c.build, func.sum(t.c.count)).group_by(t.c.build)
    stmt = f.where(period.where(stmt, t), t)
    rows = [(str(row[0]), int(row[1])) for row in conn.execute(stmt)]
    return sorted(rows, key=lambda r: build_sort_key(r[0]))
