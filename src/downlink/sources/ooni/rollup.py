"""Aggregation rollups: OONI's four counts per time bucket and a few dimensions.

``GET /api/v1/aggregation`` over 30 days of 10M measurements cannot group the
fastpath rows per request in under a second; it reads these instead. Each level is a
table (``tables.agg_*``) keyed by a bucket (epoch hour or day of the measurement start
time) and its dimensions, holding the counts of the fastpath rows in it. The fastpath
writer keeps them in the same transaction as its rows (``fastpath_store``): a new row
adds to its buckets, a replaced row first subtracts its old values, a deleted row
subtracts; so a reprocess (delete, rescore) leaves them equal to a fresh count.

A query uses the first level (cheapest first) that has every dimension it groups or
filters by and a bucket no coarser than its grain, for the whole buckets of its range;
the partial buckets at the range's ends come from a finer level, and the partial hours
from the fastpath rows themselves (``aggregation.run``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, Table, and_, case, cast, func, not_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from downlink.sources.ooni.tables import (
    ROLLUP_COUNTS,
    agg_day_asn,
    agg_day_cc,
    agg_day_domain,
    agg_hour_cc,
    fastpath,
)

HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Level:
    """One rollup table: its bucket column and size (seconds) and its dimensions."""

    table: Table
    bucket: str
    seconds: int
    dims: tuple[str, ...]


LEVELS = (
    Level(agg_day_cc, "day", DAY, ("probe_cc", "test_name", "blocking_type")),
    Level(agg_day_asn, "day", DAY, ("probe_cc", "probe_asn", "test_name", "blocking_type")),
    Level(agg_day_domain, "day", DAY, ("probe_cc", "test_name", "domain", "blocking_type")),
    Level(agg_hour_cc, "hour", HOUR, ("probe_cc", "test_name", "blocking_type")),
)
# What a fastpath row contributes: these columns decide its buckets and counts.
SOURCE_COLUMNS = (
    "measurement_start_time", "probe_cc", "probe_asn", "test_name", "domain",
    "blocking_type", "anomaly", "confirmed", "msm_failure",
)


def counts(anomaly: Any, confirmed: Any, failure: Any) -> tuple[int, int, int, int, int]:
    """OONI's counts of one measurement: anomaly, confirmed, failure, ok, total."""
    a, c, f = bool(anomaly), bool(confirmed), bool(failure)
    return (
        int(a and not c and not f), int(c and not f), int(f), int(not (a or c or f)), 1,
    )


Delta = dict[tuple[int, tuple[Any, ...]], list[int]]


def add_rows(delta: Delta, rows: Iterable[Mapping[str, Any]], sign: int) -> None:
    """Add (sign 1) or subtract (-1) fastpath rows' contributions to ``delta``."""
    for row in rows:
        t = row["measurement_start_time"]
        if t is None:
            continue
        n = counts(row["anomaly"], row["confirmed"], row["msm_failure"])
        for i, level in enumerate(LEVELS):
            key = (int(t // level.seconds), *(row[d] for d in level.dims))
            acc = delta.setdefault((i, key), [0] * len(ROLLUP_COUNTS))
            for j, v in enumerate(n):
                acc[j] += sign * v


def apply(conn: Connection, delta: Delta) -> None:
    """Add ``delta`` to the rollup tables (one upsert per level and chunk)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for i, level in enumerate(LEVELS):
        cols = (level.bucket, *level.dims)
        values = [
            {**dict(zip(cols, key, strict=True)), **dict(zip(ROLLUP_COUNTS, n, strict=True))}
            for (li, key), n in sorted(delta.items(), key=lambda kv: repr(kv[0]))
            if li == i and any(n)
        ]
        if not values:
            continue
        t = level.table
        stmt = insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c[c] for c in cols],
            set_={n: t.c[n] + stmt.excluded[n] for n in ROLLUP_COUNTS},
        )
        conn.execute(stmt, values)


def existing(conn: Connection, uids: Sequence[str]) -> list[Mapping[str, Any]]:
    """The stored contributions of these measurements (the rows an upsert replaces)."""
    out: list[Mapping[str, Any]] = []
    cols = [fastpath.c[c] for c in SOURCE_COLUMNS]
    for start in range(0, len(uids), 500):
        part = uids[start : start + 500]
        found = conn.execute(select(*cols).where(fastpath.c.measurement_uid.in_(part)))
        out.extend(dict(r) for r in found.mappings())
    return out


def _grouped(conn: Connection, level: Level, *conditions: Any) -> Any:
    """SELECT bucket, dims, the five counts of the fastpath rows matching conditions."""
    c = fastpath.c
    bucket = floor(conn, c.measurement_start_time, level.seconds)
    dims = [c[d] for d in level.dims]
    return (
        select(bucket, *dims, *count_columns())
        .where(and_(c.measurement_start_time.is_not(None), *conditions))
        .group_by(bucket, *dims)
    )


def subtract_where(conn: Connection, *conditions: Any) -> None:
    """Subtract the fastpath rows matching ``conditions`` (call before deleting them)."""
    for i, level in enumerate(LEVELS):
        width = 1 + len(level.dims)
        delta: Delta = {
            (i, tuple(r[:width])): [-int(v) for v in r[width:]]
            for r in conn.execute(_grouped(conn, level, *conditions))
        }
        apply(conn, delta)


def rebuild(conn: Connection) -> None:
    """Recount every level from the fastpath rows, in SQL (after a bulk load)."""
    for level in LEVELS:
        t = level.table
        conn.execute(t.delete())
        cols = [t.c[level.bucket], *(t.c[d] for d in level.dims),
                *(t.c[n] for n in ROLLUP_COUNTS)]
        conn.execute(t.insert().from_select(cols, _grouped(conn, level)))


def count_columns() -> list[Any]:
    """The five counts as aggregates over fastpath rows (reference A4's definitions)."""
    c = fastpath.c
    return [
        func.sum(case((and_(c.anomaly, not_(c.confirmed), not_(c.msm_failure)), 1), else_=0)),
        func.sum(case((and_(c.confirmed, not_(c.msm_failure)), 1), else_=0)),
        func.sum(case((c.msm_failure, 1), else_=0)),
        func.sum(
            case((and_(not_(c.anomaly), not_(c.confirmed), not_(c.msm_failure)), 1), else_=0)
        ),
        func.count(),
    ]


def floor(conn: Connection, column: Any, seconds: int) -> Any:
    """``floor(column / seconds)`` as an integer, the same on both databases.

    SQLite's CAST truncates, which is the floor of the positive epoch times stored
    here; PostgreSQL's rounds, so it takes floor() first.
    """
    if conn.dialect.name == "postgresql":
        return cast(func.floor(column / seconds), BigInteger)
    return cast(column, BigInteger) // seconds


def choose(dims: set[str], grain_seconds: int) -> Level | None:
    """The cheapest level with these dimensions and a bucket dividing the grain."""
    for level in LEVELS:
        if dims <= set(level.dims) and grain_seconds % level.seconds == 0:
            return level
    return None


