"""Rollup counts kept up to date at ingest, so dashboards never scan ``records``.

:func:`update_rollups` is a writer processor: it runs inside the group-commit
transaction on the records that are really new (retransmissions are filtered out
before processors run), aggregates the batch in memory and applies one upsert per
rollup table. Unique machines are counted without scanning: ``rollup_machines`` holds
one row per (day, build, machine) inserted only if absent, and every row that *was*
inserted increments ``rollup_population`` for its (day, build).

It must run after the crash processor that fills ``guilty_id``. When guilty groups
change (blacklist edits), :func:`rebuild_guilty_rollups` recomputes the crash rollups
from the crash records alone; :func:`rebuild_rollups` recomputes everything.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from downlink.store.tables import (
    records,
    rollup_daily,
    rollup_guilty,
    rollup_guilty_machines,
    rollup_machines,
    rollup_mce,
    rollup_population,
)

Row = dict[str, Any]

DAY = 86400
MCE_PREFIX = "org.clearlinux/mce/"
# telemetryui's status regex: the last 8 hex digits before " MCGSTATUS".
_MCE_STATUS = re.compile(r"STATUS.*([A-Fa-f0-9]{8}) MCGSTATUS")
_CHUNK = 5000

ROLLUP_TABLES = (
    rollup_daily,
    rollup_machines,
    rollup_population,
    rollup_guilty,
    rollup_guilty_machines,
    rollup_mce,
)


def day_of(ts: float) -> int:
    """Return the UTC day number (days since 1970-01-01) of an epoch time."""
    return int(ts // DAY)


def mce_status(payload: str) -> str:
    """Return the MCE status word telemetryui charts, or '' when the payload has none."""
    m = _MCE_STATUS.search(payload)
    return m.group(1).lower() if m else ""


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _keys(table: Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


def _add_counts(
    conn: Connection, table: Table, counts: Counter[tuple[Hashable, ...]], column: str
) -> None:
    """Upsert ``counts`` (primary key tuple -> n) adding n to ``column``."""
    if not counts:
        return
    keys = _keys(table)
    # Sorted so two processes upserting the same keys lock them in the same order.
    params = [{**dict(zip(keys, k, strict=True)), column: n} for k, n in sorted(counts.items())]
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={column: table.c[column] + stmt.excluded[column]}
    )
    conn.execute(stmt, params)


def _insert_absent(
    conn: Connection, table: Table, rows: set[tuple[Hashable, ...]]
) -> list[tuple[Any, ...]]:
    """Insert the rows not yet present; return the primary keys that were new."""
    if not rows:
        return []
    keys = _keys(table)
    params = [dict(zip(keys, k, strict=True)) for k in sorted(rows)]
    stmt = (
        _insert(conn, table)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(*[table.c[k] for k in keys])
    )
    return [tuple(r) for r in conn.execute(stmt, params)]


def _guilty_upsert(conn: Connection, seen: dict[tuple[int, int, str], list[float]]) -> None:
    if not seen:
        return
    t = rollup_guilty
    params = [
        {
            "day": d,
            "guilty_id": g,
            "build": b,
            "count": int(v[0]),
            "first_seen": v[1],
            "last_seen": v[2],
        }
        for (d, g, b), v in sorted(seen.items())
    ]
    stmt = _insert(conn, t)
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=_keys(t),
        set_={
            "count": t.c.count + ex.count,
            "first_seen": case(
                (t.c.first_seen <= ex.first_seen, t.c.first_seen), else_=ex.first_seen
            ),
            "last_seen": case((t.c.last_seen >= ex.last_seen, t.c.last_seen), else_=ex.last_seen),
        },
    )
    conn.execute(stmt, params)


def _update_guilty(conn: Connection, rows: Iterable[Row]) -> None:
    seen: dict[tuple[int, int, str], list[float]] = {}
    machines: set[tuple[Hashable, ...]] = set()
    for r in rows:
        gid = r.get("guilty_id")
        if gid is None:
            continue
        ts = float(r["ts_reception"])
        day = day_of(ts)
        key = (day, int(gid), r["build"])
        v = seen.get(key)
        if v is None:
            seen[key] = [1.0, ts, ts]
        else:
            v[0] += 1
            v[1] = min(v[1], ts)
            v[2] = max(v[2], ts)
        machines.add((day, int(gid), r["build"], r["machine_id"]))
    _guilty_upsert(conn, seen)
    _insert_absent(conn, rollup_guilty_machines, machines)


def update_rollups(conn: Connection, rows: list[Row]) -> None:
    """Writer processor: add the new ``rows`` to every rollup table."""
    if not rows:
        return
    daily: Counter[tuple[Hashable, ...]] = Counter()
    machines: set[tuple[Hashable, ...]] = set()
    mce: Counter[tuple[Hashable, ...]] = Counter()
    for r in rows:
        day = day_of(float(r["ts_reception"]))
        cls = r["classification"]
        daily[(day, r["source"], cls, r["build"], r["host_type"], int(r["severity"]))] += 1
        machines.add((day, r["build"], r["machine_id"]))
        if cls.startswith(MCE_PREFIX):
            mce[(day, cls, r["build"], r["machine_id"], mce_status(r.get("payload") or ""))] += 1
    _add_counts(conn, rollup_daily, daily, "count")
    new_machines = _insert_absent(conn, rollup_machines, machines)
    _add_counts(conn, rollup_population, Counter((d, b) for d, b, _ in new_machines), "machines")
    _add_counts(conn, rollup_mce, mce, "count")
    _update_guilty(conn, rows)


_NEEDED: Sequence[str] = (
    "source",
    "classification",
    "severity",
    "machine_id",
    "ts_reception",
    "build",
    "host_type",
    "payload",
    "guilty_id",
)


def _chunks(conn: Connection, *conditions: Any) -> Iterable[list[Row]]:
    cols = [records.c.id, *[records.c[n] for n in _NEEDED]]
    last = 0
    while True:
        stmt = select(*cols).where(records.c.id > last, *conditions)
        rows = [dict(r) for r in conn.execute(stmt.order_by(records.c.id).limit(_CHUNK)).mappings()]
        if not rows:
            return
        yield rows
        last = rows[-1]["id"]


def _lock(conn: Connection, tables: Sequence[Table]) -> None:
    # PostgreSQL: block the writer's rollup upserts until the rebuild commits. A batch
    # that was mid-transaction is waited for (its records are then visible to the
    # rebuild); a later one adds its counts after the rebuild. SQLite already has one
    # writer at a time.
    if conn.dialect.name == "postgresql":
        names = ", ".join(t.name for t in tables)
        conn.exec_driver_sql(f"LOCK TABLE {names} IN EXCLUSIVE MODE")


def rebuild_rollups(conn: Connection) -> None:
    """Recompute every rollup table from ``records`` (after a migration or a purge)."""
    _lock(conn, ROLLUP_TABLES)
    for table in ROLLUP_TABLES:
        conn.execute(delete(table))
    for rows in _chunks(conn):
        update_rollups(conn, rows)


def rebuild_guilty_rollups(conn: Connection) -> None:
    """Recompute the crash rollups after ``records.guilty_id`` changed."""
    _lock(conn, (rollup_guilty, rollup_guilty_machines))
    conn.execute(delete(rollup_guilty))
    conn.execute(delete(rollup_guilty_machines))
    for rows in _chunks(conn, records.c.guilty_id.is_not(None)):
        _update_guilty(conn, rows)
