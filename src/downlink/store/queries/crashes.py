"""Crash groups ("guilties"): top of a period, details, backtraces and the blacklist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select, update

from downlink.store import sketch
from downlink.store.queries.period import Period, build_sort_key
from downlink.store.tables import (
    guilty,
    guilty_blacklist,
    records,
    rollup_guilty,
    rollup_guilty_build_sketch,
    rollup_guilty_machines,
    rollup_guilty_sketch,
)

Row = dict[str, Any]

# Up to this many crash records in the groups shown, machines are counted exactly
# (a COUNT(DISTINCT) over about one rollup row per record: ~100 ms); above it they are
# estimated from the HyperLogLog sketches (about 1.6 % relative error, bounded time).
EXACT_MACHINES_MAX = 100_000


def _exact_machines(
    conn: Connection, ids: list[int], period: Period, build: str | None
) -> dict[int, int]:
    m = rollup_guilty_machines
    mq = period.where(
        select(m.c.guilty_id, func.count(func.distinct(m.c.machine_id)))
        .where(m.c.guilty_id.in_(ids))
        .group_by(m.c.guilty_id),
        m,
    )
    if build is not None:
        mq = mq.where(m.c.build == build)
    return {int(g): int(n) for g, n in conn.execute(mq)}


def _estimated_machines(
    conn: Connection, ids: list[int], period: Period, build: str | None
) -> dict[int, int]:
    t = rollup_guilty_sketch if build is None else rollup_guilty_build_sketch
    stmt = period.where(select(t.c.guilty_id, t.c.registers).where(t.c.guilty_id.in_(ids)), t)
    if build is not None:
        stmt = stmt.where(t.c.build == build)
    blobs: dict[int, list[bytes]] = {}
    for gid, blob in conn.execute(stmt):
        blobs.setdefault(int(gid), []).append(bytes(blob))
    return {gid: sketch.estimate(sketch.union(parts)) for gid, parts in blobs.items()}


def machines_of_groups(
    conn: Connection, ids: list[int], period: Period, build: str | None, records: int
) -> tuple[dict[int, int], bool]:
    """Return distinct machines per group over the period, and whether they are estimates.

    ``records`` is how many crash records the groups have in the period: the cost of
    the exact count.
    """
    if records <= EXACT_MACHINES_MAX:
        return _exact_machines(conn, ids, period, build), False
    return _estimated_machines(conn, ids, period, build), True


def top_guilties(
    conn: Connection,
    period: Period,
    build: str | None = None,
    limit: int = 50,
    include_hidden: bool = False,
) -> list[Row]:
    """Return the most frequent visible (or, with ``include_hidden``, all) crash groups
    of the period, with their spread.

    Each item: guilty id, function, module, comment, total, machines, builds (count of
    distinct builds), first_seen, last_seen and per_build ``{build: count}``.
    ``machines_estimated`` says whether ``machines`` is exact or a sketch estimate
    (see :func:`machines_of_groups`).
    """
    r = rollup_guilty
    total = func.sum(r.c.count)
    stmt = (
        select(
            r.c.guilty_id,
            guilty.c.function,
            guilty.c.module,
            guilty.c.comment,
            guilty.c.hide,
            total.label("total"),
            func.count(func.distinct(r.c.build)).label("builds"),
            func.min(r.c.first_seen).label("first_seen"),
            func.max(r.c.last_seen).label("last_seen"),
        )
        .join(guilty, guilty.c.id == r.c.guilty_id)
        .group_by(
            r.c.guilty_id, guilty.c.function, guilty.c.module, guilty.c.comment, guilty.c.hide
        )
        .order_by(total.desc(), r.c.guilty_id)
        .limit(limit)
    )
    if not include_hidden:
        stmt = stmt.where(guilty.c.hide.is_(False))
    stmt = period.where(stmt, r)
    if build is not None:
        stmt = stmt.where(r.c.build == build)
    items = [dict(row) for row in conn.execute(stmt).mappings()]
    if not items:
        return []
    ids = [int(i["guilty_id"]) for i in items]
    per_build: dict[int, dict[str, int]] = {i: {} for i in ids}
    pb = period.where(
        select(r.c.guilty_id, r.c.build, func.sum(r.c.count))
        .where(r.c.guilty_id.in_(ids))
        .group_by(r.c.guilty_id, r.c.build),
        r,
    )
    if build is not None:
        pb = pb.where(r.c.build == build)
    for gid, b, n in conn.execute(pb):
        per_build[int(gid)][str(b)] = int(n)
    # The exact count scans the groups' rollup rows of the period, of every build.
    scanned = sum(int(i["total"]) for i in items)
    if build is not None:
        scanned = int(
            conn.execute(
                period.where(
                    select(func.coalesce(func.sum(r.c.count), 0)).where(r.c.guilty_id.in_(ids)), r
                )
            ).scalar_one()
        )
    machines, estimated = machines_of_groups(conn, ids, period, build, scanned)
    for item in items:
        gid = int(item["guilty_id"])
        item["guilty_id"] = gid
        item["total"] = int(item["total"])
        item["hide"] = bool(item["hide"])
        item["builds"] = int(item["builds"])
        item["machines"] = machines.get(gid, 0)
        item["machines_estimated"] = estimated
        item["per_build"] = dict(
            sorted(per_build[gid].items(), key=lambda kv: build_sort_key(kv[0]))
        )
    return items


def get_guilty(conn: Connection, guilty_id: int) -> Row | None:
    """Return one crash group, or None."""
    row = conn.execute(select(guilty).where(guilty.c.id == guilty_id)).mappings().first()
    return dict(row) if row is not None else None


def guilty_machines(
    conn: Connection, guilty_id: int, period: Period, limit: int | None = None, offset: int = 0
) -> list[Row]:
    """Return (build, machine_id, records) of one group in the period.

    Most crashes first (then machine id, build); ``limit`` and ``offset`` page through
    them: the top group of a large fleet hits tens of thousands of machines.
    """
    m = rollup_guilty_machines
    n = func.sum(m.c.count)
    stmt = period.where(
        select(m.c.build, m.c.machine_id, n.label("records"))
        .where(m.c.guilty_id == guilty_id)
        .group_by(m.c.build, m.c.machine_id)
        .order_by(n.desc(), m.c.machine_id, m.c.build)
        .offset(offset),
        m,
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        {"build": str(b), "machine_id": str(mid), "records": int(k)}
        for b, mid, k in conn.execute(stmt)
    ]


def guilty_builds(conn: Connection, guilty_id: int, period: Period) -> list[Row]:
    """Return per build: distinct machines and crashes of one group in the period.

    Newest build first.
    """
    m = rollup_guilty_machines
    stmt = period.where(
        select(m.c.build, func.count(func.distinct(m.c.machine_id)), func.sum(m.c.count))
        .where(m.c.guilty_id == guilty_id)
        .group_by(m.c.build),
        m,
    )
    rows: list[Row] = [
        {"build": str(b), "machines": int(k), "records": int(n)} for b, k, n in conn.execute(stmt)
    ]
    rows.sort(key=lambda x: build_sort_key(x["build"]), reverse=True)
    return rows


def guilty_machine_count(conn: Connection, guilty_id: int, period: Period) -> int:
    """Return how many distinct machines one group hit in the period."""
    m = rollup_guilty_machines
    stmt = period.where(
        select(func.count(func.distinct(m.c.machine_id))).where(m.c.guilty_id == guilty_id), m
    )
    return int(conn.execute(stmt).scalar_one())


def guilty_records(
    conn: Connection,
    guilty_id: int,
    *,
    machine_id: str | None = None,
    build: str | None = None,
    period: Period | None = None,
    limit: int = 50,
) -> list[Row]:
    """Return the newest records of one crash group (optionally one machine/build/period)."""
    stmt = select(records).where(records.c.guilty_id == guilty_id)
    if period is not None:
        stmt = stmt.where(
            records.c.ts_reception >= period.first * 86400.0,
            records.c.ts_reception < (period.last + 1) * 86400.0,
        )
    if machine_id is not None:
        stmt = stmt.where(records.c.machine_id == machine_id)
    if build is not None:
        stmt = stmt.where(records.c.build == build)
    stmt = stmt.order_by(records.c.id.desc()).limit(limit)
    return [dict(x) for x in conn.execute(stmt).mappings()]


def blacklist(conn: Connection) -> list[Row]:
    """Return every "never guilty" frame, by function then module."""
    t = guilty_blacklist
    stmt = select(t).order_by(t.c.function, t.c.module)
    return [dict(x) for x in conn.execute(stmt).mappings()]


def update_guilty(conn: Connection, guilty_id: int, comment: str, hide: bool) -> bool:
    """Set a crash group's comment and hidden flag; return False if it does not exist."""
    stmt = update(guilty).where(guilty.c.id == guilty_id).values(comment=comment, hide=hide)
    return bool(conn.execute(stmt).rowcount)
