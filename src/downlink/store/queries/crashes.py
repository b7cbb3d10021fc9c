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
    conn: Connection, period: Period, build: str | None = None, limit: int = 50
) -> list[Row]:
    """Return the most frequent visible crash groups of the period, with their spread.

    Each item: guilty id, function, module, comment, total, machines, builds (count of
    distinct builds), first_seen, last_seen and per_build ``{build: count}``.
    ``machines_estimated`` says whether ``machines`` is exact or a sketch estimate
    (see :func:`machines_of_groups`).

    One pass over the period's ``rollup_guilty`` rows (read from its covering index),
    summed per (group, build) in SQL and ranked here: totals, spread, per-build counts
    and the cost of an exact machine count all come from the same few thousand rows.
    """
    r = rollup_guilty
    cells = period.where(
        select(
            r.c.guilty_id,
            r.c.build,
            func.sum(r.c.count),
            func.min(r.c.first_seen),
            func.max(r.c.last_seen),
        ).group_by(r.c.guilty_id, r.c.build),
        r,
    )
    hidden = set(conn.execute(select(guilty.c.id).where(guilty.c.hide.is_(True))).scalars())
    groups: dict[int, dict[str, Any]] = {}
    every_build: dict[int, int] = {}  # crash rows of the group in the period, any build
    for gid_, b, n_, first, last in conn.execute(cells):
        gid, n = int(gid_), int(n_)
        if gid in hidden:
            continue
        every_build[gid] = every_build.get(gid, 0) + n
        if build is not None and b != build:
            continue
        g = groups.get(gid)
        if g is None:
            groups[gid] = {"total": n, "first_seen": first, "last_seen": last, "per_build": {}}
            g = groups[gid]
        else:
            g["total"] += n
            g["first_seen"] = min(g["first_seen"], first)
            g["last_seen"] = max(g["last_seen"], last)
        g["per_build"][str(b)] = n
    ids = sorted(groups, key=lambda gid: (-groups[gid]["total"], gid))[:limit]
    if not ids:
        return []
    labels = {
        int(row.id): row
        for row in conn.execute(
            select(guilty.c.id, guilty.c.function, guilty.c.module, guilty.c.comment).where(
                guilty.c.id.in_(ids)
            )
        )
    }
    # The exact count scans the groups' rollup rows of the period, of every build.
    scanned = sum(every_build[gid] for gid in ids)
    machines, estimated = machines_of_groups(conn, ids, period, build, scanned)
    items: list[Row] = []
    for gid in ids:
        g, label = groups[gid], labels.get(gid)
        if label is None:  # rollup rows of a group deleted meanwhile
            continue
        items.append(
            {
                "guilty_id": gid,
                "function": label.function,
                "module": label.module,
                "comment": label.comment,
                "total": g["total"],
                "builds": len(g["per_build"]),
                "first_seen": g["first_seen"],
                "last_seen": g["last_seen"],
                "machines": machines.get(gid, 0),
                "machines_estimated": estimated,
                "per_build": dict(
                    sorted(g["per_build"].items(), key=lambda kv: build_sort_key(kv[0]))
                ),
            }
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
    limit: int = 50,
) -> list[Row]:
    """Return the newest records of one crash group (optionally one machine/build)."""
    stmt = select(records).where(records.c.guilty_id == guilty_id)
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
