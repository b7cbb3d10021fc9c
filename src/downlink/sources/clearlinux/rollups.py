"""Rollup counts kept up to date after the ack, so dashboards never scan ``records``.

Two consumers of the Clear Linux records (``downlink.sources.clearlinux.consumers``)
call :func:`update_counts` and :func:`update_crashes` on each batch of committed
records, in the transaction that moves their cursors (retransmissions were never
stored twice); each aggregates the batch in memory and applies a few multi-row
upserts. :func:`reset_counts` and :func:`reset_crashes` forget a range of days before
``downlink reprocess`` replays it. Record counts go to four "cubes" of the same
numbers at different widths (class; class+build; class+platform; everything), so each
dashboard reads the smallest table that has its columns. Unique machines are counted
without scanning: ``rollup_machines`` holds one row per (grain, period, build,
machine), inserted only if absent, and each row that *was* inserted (``RETURNING``) adds one to
``rollup_population`` for that (grain, period, build). Grains are day, ISO week and
calendar month, so a week's count is of distinct machines, not a sum of days.

The crash rollups count records by the ``guilty_id`` the crash consumer gave them.
When crash groups change (blacklist edits), :func:`rebuild_guilty_group` recomputes
a group's rollups from the records the crash consumer has applied;
:func:`rebuild_rollups` recomputes everything (migrations).

The statements are written as plain SQL: going through SQLAlchemy's per-parameter
compilation cost more than the database work at tens of thousands of rows per second.
SQLite gets multi-row ``VALUES``; PostgreSQL gets all rows as one JSON parameter
through ``json_populate_recordset`` (a short statement, the same for every batch).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Dialect,
    Integer,
    LargeBinary,
    Table,
    cast,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
)

from downlink.sources.clearlinux.mce import MCE_CLASSES, MCE_PREFIX
from downlink.sources.clearlinux.tables import (
    guilty,
    rollup_build_daily,
    rollup_class_daily,
    rollup_daily,
    rollup_guilty,
    rollup_guilty_build_sketch,
    rollup_guilty_machine_totals,
    rollup_guilty_machines,
    rollup_guilty_sketch,
    rollup_machines,
    rollup_mce,
    rollup_mce_machine_weeks,
    rollup_mce_machines,
    rollup_platform_daily,
    rollup_population,
)
from downlink.store import sketch
from downlink.store.tables import records

Row = dict[str, Any]
Key = tuple[Hashable, ...]
Cell = tuple[Any, ...]  # (day, guilty_id[, build]) of a sketch

DAY = 86400
# telemetryui's status regex: the last 8 hex digits before " MCGSTATUS".
_MCE_STATUS = re.compile(r"STATUS.*([A-Fa-f0-9]{8}) MCGSTATUS")
_CHUNK = 5000
_ROWS_PER_STATEMENT = 500
_EPOCH = date(1970, 1, 1)
_GUILTY_COLUMNS = ["day", "guilty_id", "build", "count", "first_seen", "last_seen"]
_MACHINE_COLUMNS = ["day", "guilty_id", "build", "machine_id", "count"]
_TOTAL_COLUMNS = ["guilty_id", "build", "machine_id", "count", "first_day", "last_day"]

ROLLUP_TABLES = (
    rollup_daily,
    rollup_class_daily,
    rollup_build_daily,
    rollup_platform_daily,
    rollup_machines,
    rollup_population,
    rollup_guilty,
    rollup_guilty_machines,
    rollup_guilty_machine_totals,
    rollup_guilty_sketch,
    rollup_guilty_build_sketch,
    rollup_mce,
    rollup_mce_machines,
    rollup_mce_machine_weeks,
)

def day_of(ts: float) -> int:
    """Return the UTC day number (days since 1970-01-01) of an epoch time."""
    return int(ts // DAY)


def week_of(day: int) -> int:
    """Return the day number of the Monday of the week of ``day`` (1970-01-01 was a Thursday)."""
    return day - (day + 3) % 7


def month_of(day: int) -> int:
    """Return ``year * 100 + month`` of a day number."""
    d = _EPOCH + timedelta(days=day)
    return d.year * 100 + d.month


def mce_status(payload: str) -> str:
    """Return the MCE status word telemetryui charts, or '' when the payload has none."""
    m = _MCE_STATUS.search(payload)
    return m.group(1).lower() if m else ""


def _keys(table: Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


def _values_sql(table: Table, columns: Sequence[str], n: int) -> str:
    row = "(" + ", ".join(["?"] * len(columns)) + ")"
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES " + ", ".join([row] * n)


@lru_cache(maxsize=64)
def _pg_sql(
    table: Table, columns: tuple[str, ...], tail: str, dialect: Dialect
) -> tuple[str, bool]:
    """Return the statement and whether it takes one array per column (else JSON)."""
    names = ", ".join(columns)
    arrays = any(isinstance(table.c[name].type, LargeBinary) for name in columns)
    if arrays:
        # bytea does not travel in JSON: one array per column.
        casts = ", ".join(
            f"CAST(%s AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns
        )
        source = f"unnest({casts}) AS u({names})"
    else:
        source = f"json_populate_recordset(NULL::{table.name}, CAST(%s AS json)) AS u"
    return f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {source} {tail}", arrays


def _run(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[Key],
    tail: str,
    returning: bool = False,
) -> list[tuple[Any, ...]]:
    if conn.dialect.name == "postgresql":
        # One parameter for all rows, so the statement text is short and the same for
        # every batch (psycopg rewrote thousands of placeholders on every execution),
        # and the rows travel as JSON that orjson writes in C (psycopg dumps array
        # elements in Python: the writer's largest cost in the bulk profile). Sorted so
        # that two server processes upserting the same keys lock them in the same order
        # (no deadlock).
        rows = sorted(rows, key=repr)
        sql, arrays = _pg_sql(table, tuple(columns), tail, conn.dialect)
        if arrays:
            params: tuple[Any, ...] = tuple(list(col) for col in zip(*rows, strict=True))
        else:
            names = [str(c) for c in columns]
            params = (orjson.dumps([dict(zip(names, r, strict=True)) for r in rows]).decode(),)
        result = conn.exec_driver_sql(sql, params)
        return [tuple(r) for r in result.fetchall()] if returning else []
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        part = rows[start : start + _ROWS_PER_STATEMENT]
        sql = _values_sql(table, columns, len(part)) + " " + tail
        params = tuple(v for r in part for v in r)
        result = conn.exec_driver_sql(sql, params)
        if returning:
            out.extend(tuple(r) for r in result.fetchall())
    return out


def _add_counts(conn: Connection, table: Table, counts: Counter[Key], column: str) -> None:
    """Upsert ``counts`` (primary key tuple -> n), adding n to ``column``."""
    if not counts:
        return
    keys = _keys(table)
    tail = (
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        f"{column} = {table.name}.{column} + excluded.{column}"
    )
    _run(conn, table, [*keys, column], [(*k, n) for k, n in counts.items()], tail)


def _insert_absent(conn: Connection, table: Table, rows: set[Key]) -> list[tuple[Any, ...]]:
    """Insert the rows not yet present; return the primary keys that were new."""
    if not rows:
        return []
    keys = _keys(table)
    tail = f"ON CONFLICT ({', '.join(keys)}) DO NOTHING RETURNING {', '.join(keys)}"
    return _run(conn, table, keys, list(rows), tail, returning=True)


def _guilty_upsert(conn: Connection, seen: dict[tuple[int, int, str], list[float]]) -> None:
    if not seen:
        return
    t = rollup_guilty.name
    tail = (
        "ON CONFLICT (day, guilty_id, build) DO UPDATE SET "
        f"count = {t}.count + excluded.count, "
        f"first_seen = CASE WHEN {t}.first_seen <= excluded.first_seen "
        f"THEN {t}.first_seen ELSE excluded.first_seen END, "
        f"last_seen = CASE WHEN {t}.last_seen >= excluded.last_seen "
        f"THEN {t}.last_seen ELSE excluded.last_seen END"
    )
    rows: list[Key] = [(d, g, b, int(v[0]), v[1], v[2]) for (d, g, b), v in seen.items()]
    _run(conn, rollup_guilty, _GUILTY_COLUMNS, rows, tail)


def _add_machine_totals(conn: Connection, per_machine: Iterable[tuple[Any, ...]]) -> None:
    """Add (day, guilty_id, build, machine_id, count) rows to the all-time totals."""
    totals: dict[Key, list[int]] = {}
    for day, gid, build, machine, n in per_machine:
        key = (int(gid), build, machine)
        v = totals.get(key)
        if v is None:
            totals[key] = [int(n), int(day), int(day)]
        else:
            v[0] += int(n)
            v[1] = min(v[1], int(day))
            v[2] = max(v[2], int(day))
    if not totals:
        return
    t = rollup_guilty_machine_totals.name
    tail = (
        "ON CONFLICT (guilty_id, build, machine_id) DO UPDATE SET "
        f"count = {t}.count + excluded.count, "
        f"first_day = CASE WHEN {t}.first_day <= excluded.first_day "
        f"THEN {t}.first_day ELSE excluded.first_day END, "
        f"last_day = CASE WHEN {t}.last_day >= excluded.last_day "
        f"THEN {t}.last_day ELSE excluded.last_day END"
    )
    rows: list[Key] = [(*k, *v) for k, v in totals.items()]
    _run(conn, rollup_guilty_machine_totals, _TOTAL_COLUMNS, rows, tail)


def _merge_sketches(conn: Connection, table: Table, updates: dict[Cell, sketch.Updates]) -> None:
    """Add pending register updates to the stored sketches of ``table`` (key -> updates).

    Read, raise, write back. On PostgreSQL the rows are first created if missing and
    then locked (``FOR UPDATE``, in key order) so that two server processes adding to
    the same sketch cannot lose each other's registers; SQLite has one writer.
    """
    if not updates:
        return
    keys = _keys(table)
    wanted = sorted(updates)
    days = [k[0] for k in wanted]
    gids = sorted({k[1] for k in wanted})
    lock = ""
    if conn.dialect.name == "postgresql":
        _run(
            conn,
            table,
            [*keys, "registers"],
            [(*k, sketch.encode(bytes(sketch.M))) for k in wanted],
            f"ON CONFLICT ({', '.join(keys)}) DO NOTHING",
        )
        lock = " FOR UPDATE"
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    sql = (
        f"SELECT {', '.join(keys)}, registers FROM {table.name} "
        f"WHERE day >= {mark} AND day <= {mark} "
        f"AND guilty_id IN ({', '.join([mark] * len(gids))}) "
        f"ORDER BY {', '.join(keys)}{lock}"
    )
    stored: dict[Cell, bytes] = {}
    for *found, blob in conn.exec_driver_sql(sql, (min(days), max(days), *gids)):
        stored[tuple(found)] = blob
    changed: list[Key] = []
    for key in wanted:
        regs = sketch.registers(stored.get(key))
        if sketch.apply(regs, updates[key]) or key not in stored:
            changed.append((*key, sketch.encode(regs)))
    if changed:
        tail = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET registers = excluded.registers"
        _run(conn, table, [*keys, "registers"], changed, tail)


def _update_guilty(conn: Connection, rows: Iterable[Row], *, later_tables: bool = True) -> None:
    seen: dict[tuple[int, int, str], list[float]] = {}
    machines: Counter[Key] = Counter()
    per_group: dict[Cell, sketch.Updates] = {}
    per_build: dict[Cell, sketch.Updates] = {}
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
        machines[(day, int(gid), r["build"], r["machine_id"])] += 1
        sketch.add(per_group.setdefault((day, int(gid)), {}), r["machine_id"])
        sketch.add(per_build.setdefault((day, int(gid), r["build"]), {}), r["machine_id"])
    _guilty_upsert(conn, seen)
    _add_counts(conn, rollup_guilty_machines, machines, "count")
    if later_tables:
        _add_machine_totals(conn, ((d, g, b, m, n) for (d, g, b, m), n in machines.items()))
        _merge_sketches(conn, rollup_guilty_sketch, per_group)
        _merge_sketches(conn, rollup_guilty_build_sketch, per_build)


def update_rollups(conn: Connection, rows: list[Row], *, later_tables: bool = True) -> None:
    """Add ``rows`` (with their ``guilty_id``) to every rollup table.

    ``later_tables=False`` leaves out the crash tables created after migration 0003
    (machine sketches and totals), for that migration.
    """
    update_counts(conn, rows)
    _update_guilty(conn, rows, later_tables=later_tables)


def update_crashes(conn: Connection, rows: Iterable[Row]) -> None:
    """Add crash records (those with a ``guilty_id``) to every crash rollup; records
    stored flagged (their sender id did not match its binding: docs/senders.md) are
    not counted."""
    _update_guilty(conn, [r for r in rows if not r.get("sender_flagged")])


def update_counts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add ``rows`` to the record counts, machines, population and MCE rollups
    (flagged records, see :func:`update_crashes`, are not counted)."""
    rows = [r for r in rows if not r.get("sender_flagged")]
    if not rows:
        return
    wide: Counter[Key] = Counter()
    machines: set[Key] = set()
    mce: Counter[Key] = Counter()
    mce_machines: Counter[Key] = Counter()
    grains: dict[int, tuple[int, int]] = {}
    for r in rows:
        day = day_of(float(r["ts_reception"]))
        cls = r["classification"]
        build = r["build"]
        wide[(day, r["source"], cls, build, r["host_type"], int(r["severity"]))] += 1
        if day not in grains:
            grains[day] = (week_of(day), month_of(day))
        week, month = grains[day]
        machine = r["machine_id"]
        machines.add(("d", day, build, machine))
        machines.add(("w", week, build, machine))
        machines.add(("m", month, build, machine))
        if cls.startswith(MCE_PREFIX):
            mce[(day, cls, build, mce_status(r.get("payload") or ""))] += 1
            mce_machines[(week, cls, build, machine)] += 1
    by_class: Counter[Key] = Counter()
    by_build: Counter[Key] = Counter()
    by_platform: Counter[Key] = Counter()
    for (d, source, c, b, host, sev), n in wide.items():
        by_class[(d, source, c, sev)] += n
        by_build[(d, source, c, sev, b)] += n
        by_platform[(d, source, c, sev, host)] += n
    _add_counts(conn, rollup_daily, wide, "count")
    _add_counts(conn, rollup_class_daily, by_class, "count")
    _add_counts(conn, rollup_build_daily, by_build, "count")
    _add_counts(conn, rollup_platform_daily, by_platform, "count")
    new_machines = _insert_absent(conn, rollup_machines, machines)
    population: Counter[Key] = Counter((g, p, b) for g, p, b, _ in new_machines)
    _add_counts(conn, rollup_population, population, "machines")
    _add_counts(conn, rollup_mce, mce, "count")
    _add_counts(conn, rollup_mce_machines, mce_machines, "count")
    _add_counts(conn, rollup_mce_machine_weeks, _machine_weeks(mce_machines), "count")


def _machine_weeks(mce_machines: Counter[Key]) -> Counter[Key]:
    """``rollup_mce_machine_weeks`` counts from ``rollup_mce_machines`` ones: the MCE
    classes (not thermal) per (week, machine), every build together."""
    weeks: Counter[Key] = Counter()
    for (week, cls, _build, machine), n in mce_machines.items():
        if cls in MCE_CLASSES:
            weeks[(week, machine)] += n
    return weeks


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
    "sender_flagged",
)


def _chunks(conn: Connection, *conditions: Any) -> Iterable[list[Row]]:
    cols = [records.c.id, *[records.c[n] for n in _NEEDED]]
    last = 0
    while True:
        stmt = select(*cols).where(records.c.id > last, *conditions)
        result = conn.execute(stmt.order_by(records.c.id).limit(_CHUNK)).mappings()
        rows = [dict(r) for r in result]
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


def rebuild_rollups(conn: Connection, *, later_tables: bool = True) -> None:
    """Recompute every rollup table from ``records`` (after a migration or a purge).

    ``later_tables=False`` leaves alone the crash tables created after migration 0003
    (the machine sketches and totals): 0003 runs before the migrations that create
    them, and those fill them themselves.
    """
    tables = ROLLUP_TABLES if later_tables else tuple(t for t in ROLLUP_TABLES if t not in _LATER)
    _lock(conn, tables)
    for table in tables:
        conn.execute(delete(table))
    for rows in _chunks(conn):
        update_rollups(conn, rows, later_tables=later_tables)


def _day_sql(conn: Connection) -> Any:
    seconds = records.c.ts_reception / DAY
    if conn.dialect.name == "postgresql":
        return cast(func.floor(seconds), Integer)  # a plain cast would round
    return cast(seconds, Integer)  # SQLite truncates: floor for positive times


def rebuild_guilty_rollups(conn: Connection, handled: Any = None) -> None:
    """Recompute the crash rollups after ``records.guilty_id`` changed (every group)."""
    for gid in guilty_ids(conn):
        rebuild_guilty_group(conn, gid, handled)


def guilty_ids(conn: Connection) -> list[int]:
    """Return the id of every crash group, including ones whose records all moved."""
    found = conn.execute(select(guilty.c.id).order_by(guilty.c.id)).scalars()
    return [int(g) for g in found]


def _group_rollup_selects(conn: Connection, *where: Any) -> tuple[Any, Any]:
    """SELECTs of the crash rollup rows (per build, per machine) of matching records."""
    r = records.c
    where = (*where, r.sender_flagged.is_not(True))  # flagged records are not counted
    day = _day_sql(conn).label("day")
    per_build = (
        select(
            day,
            r.guilty_id,
            r.build,
            func.count(),
            func.min(r.ts_reception),
            func.max(r.ts_reception),
        )
        .where(*where)
        .group_by(day, r.guilty_id, r.build)
    )
    per_machine = (
        select(day, r.guilty_id, r.build, r.machine_id, func.count())
        .where(*where)
        .group_by(day, r.guilty_id, r.build, r.machine_id)
    )
    return per_build, per_machine


def rebuild_guilty_group(conn: Connection, guilty_id: int, handled: Any = None) -> None:
    """Recompute one crash group's rollups and machine sketches from its records.

    ``handled`` (a condition on ``records``) restricts the count to the records the
    crash consumer has applied: it adds the others itself when it gets to them.

    Done in SQL over the group's records (found through the ``guilty_id`` index), so
    regrouping does not drag every crash payload through Python; one group per
    transaction keeps SQLite's write lock (and ingestion) waiting for one group only.
    """
    _lock(conn, _GROUP_TABLES)
    for table in _GROUP_TABLES:
        conn.execute(delete(table).where(table.c.guilty_id == guilty_id))
    where = [records.c.guilty_id == guilty_id]
    if handled is not None:
        where.append(handled)
    per_build, per_machine = _group_rollup_selects(conn, *where)
    conn.execute(insert(rollup_guilty).from_select(_GUILTY_COLUMNS, per_build))
    conn.execute(insert(rollup_guilty_machines).from_select(_MACHINE_COLUMNS, per_machine))
    fill_machine_totals(conn, guilty_id)
    m = rollup_guilty_machines.c
    _fill_sketches(
        conn,
        select(m.day, m.guilty_id, m.build, m.machine_id)
        .where(m.guilty_id == guilty_id)
        .order_by(m.day),
    )


@dataclass(frozen=True)
class GroupAggregates:
    """One crash group's rollup rows computed from its records up to ``last_id``."""

    guilty_id: int
    last_id: int
    per_build: list[tuple[Any, ...]]  # (day, guilty_id, build, count, first, last)
    per_machine: list[tuple[Any, ...]]  # (day, guilty_id, build, machine_id, count)


def aggregate_guilty_group(
    conn: Connection, guilty_id: int, last_id: int | None = None
) -> GroupAggregates:
    """Read one group's rollup rows from its records (no write lock needed).

    Only records up to ``last_id`` (default: the highest id seen at the start; the
    crash consumer's cursor when it counts the records) are counted, so the result is
    consistent without a snapshot: on SQLite (one writer, ids handed out in commit
    order) every record committed later has a higher id and is added by
    :func:`reset_guilty_group`. Not for PostgreSQL, where a lower id can commit later.
    """
    last = last_id
    if last is None:
        last = int(conn.execute(select(func.coalesce(func.max(records.c.id), 0))).scalar_one())
    r = records.c
    per_build, per_machine = _group_rollup_selects(conn, r.guilty_id == guilty_id, r.id <= last)
    return GroupAggregates(
        guilty_id,
        last,
        [tuple(x) for x in conn.execute(per_build)],
        [tuple(x) for x in conn.execute(per_machine)],
    )


def reset_guilty_group(
    conn: Connection, found: GroupAggregates, up_to_id: int | None = None
) -> None:
    """Empty one group's rollups and count the records stored since ``found`` was read.

    The first write of a two-phase group rebuild (:func:`aggregate_guilty_group` read
    the rest): records with an id above ``found.last_id`` are added here as the writer
    would add them, and records stored after this commits are added by the writer
    itself, to rows that :func:`add_guilty_rows` then adds to (every rollup of a crash
    group is a sum, a minimum, a maximum or a register-wise maximum, so the order does
    not matter).
    """
    gid = found.guilty_id
    for table in _GROUP_TABLES:
        conn.execute(delete(table).where(table.c.guilty_id == gid))
    cols = [records.c[n] for n in _NEEDED]
    where = [records.c.guilty_id == gid, records.c.id > found.last_id]
    if up_to_id is not None:  # records after the crash consumer's cursor are its own
        where.append(records.c.id <= up_to_id)
    newer = conn.execute(select(*cols).where(*where)).mappings()
    _update_guilty(conn, [dict(x) for x in newer if not x["sender_flagged"]])


def add_guilty_rows(
    conn: Connection, per_build: list[tuple[Any, ...]], per_machine: list[tuple[Any, ...]]
) -> None:
    """Add aggregated crash rows (parts of a :class:`GroupAggregates`) to the rollups."""
    _guilty_upsert(conn, {(d, g, b): [float(n), lo, hi] for d, g, b, n, lo, hi in per_build})
    _add_counts(
        conn,
        rollup_guilty_machines,
        Counter({(d, g, b, m): int(n) for d, g, b, m, n in per_machine}),
        "count",
    )
    _add_machine_totals(conn, per_machine)
    per_group: dict[Cell, sketch.Updates] = {}
    per_build_cell: dict[Cell, sketch.Updates] = {}
    for d, g, b, m, _ in per_machine:
        sketch.add(per_group.setdefault((d, int(g)), {}), m)
        sketch.add(per_build_cell.setdefault((d, int(g), b), {}), m)
    _merge_sketches(conn, rollup_guilty_sketch, per_group)
    _merge_sketches(conn, rollup_guilty_build_sketch, per_build_cell)


_SKETCHES = (rollup_guilty_sketch, rollup_guilty_build_sketch)
# Every rollup of one crash group (emptied and refilled together when it is rebuilt).
_GROUP_TABLES = (rollup_guilty, rollup_guilty_machines, rollup_guilty_machine_totals, *_SKETCHES)
# Created after migration 0003 (see rebuild_rollups).
_LATER = (*_SKETCHES, rollup_guilty_machine_totals, rollup_mce_machine_weeks)


def fill_machine_totals(conn: Connection, guilty_id: int | None = None) -> None:
    """Insert the all-time machine totals of one group (None: every group).

    Summed in SQL from ``rollup_guilty_machines``, whose rows for the group(s) must be
    complete and the totals' rows absent.
    """
    m = rollup_guilty_machines.c
    per_machine = select(
        m.guilty_id, m.build, m.machine_id, func.sum(m.count), func.min(m.day), func.max(m.day)
    ).group_by(m.guilty_id, m.build, m.machine_id)
    if guilty_id is not None:
        per_machine = per_machine.where(m.guilty_id == guilty_id)
    conn.execute(insert(rollup_guilty_machine_totals).from_select(_TOTAL_COLUMNS, per_machine))


def rebuild_guilty_sketches(conn: Connection) -> None:
    """Recompute the machine sketches of crash groups from ``rollup_guilty_machines``.

    One pass over that table in key order, so only one day's sketches are held in
    memory at a time.
    """
    _lock(conn, _SKETCHES)
    for table in _SKETCHES:
        conn.execute(delete(table))
    m = rollup_guilty_machines.c
    _fill_sketches(conn, select(m.day, m.guilty_id, m.build, m.machine_id).order_by(m.day))


def _fill_sketches(conn: Connection, source: Any) -> None:
    """Insert the sketches of (day, guilty_id, build, machine_id) rows ordered by day.

    ``source`` is a SELECT giving those rows, or the rows themselves.
    """
    current: int | None = None
    per_group: dict[Cell, bytearray] = {}
    per_build: dict[Cell, bytearray] = {}

    def flush() -> None:
        for table, cells in (
            (rollup_guilty_sketch, per_group),
            (rollup_guilty_build_sketch, per_build),
        ):
            rows = [(*key, sketch.encode(regs)) for key, regs in sorted(cells.items())]
            if rows:
                _run(conn, table, [*_keys(table), "registers"], rows, "")
            cells.clear()

    rows = (
        source
        if isinstance(source, list)
        else conn.execute(source.execution_options(yield_per=20000))
    )
    for day, gid, build, machine in rows:
        if day != current:
            flush()
            current = day
        index, rank = sketch.register_of(machine)
        for cells, key in ((per_group, (day, int(gid))), (per_build, (day, int(gid), build))):
            regs = cells.get(key)
            if regs is None:
                regs = cells[key] = bytearray(sketch.M)
            if regs[index] < rank:
                regs[index] = rank
    flush()


def _month_start(month: int) -> int:
    """Day number of the first day of ``year * 100 + month``."""
    return (date(month // 100, month % 100, 1) - _EPOCH).days


def _next_month_start(month: int) -> int:
    year, m = divmod(month, 100)
    return _month_start(year * 100 + m + 1 if m < 12 else (year + 1) * 100 + 1)


def reset_counts(conn: Connection, first_day: int, end_day: int, handled: Any) -> None:
    """Forget the counts of the records received on days ``[first_day, end_day)``.

    The day tables lose those days. The week and month machine sets (and
    ``rollup_mce_machines``, by week) lose every period touching the range, and the
    parts of those periods outside it are counted again from ``records`` (the rows
    matching ``handled``: the consumer's source, up to its cursor), so that adding
    the range's records back (:func:`update_counts`) gives what adding every record
    once gives.
    """
    if end_day <= first_day:
        return
    for table in (rollup_daily, rollup_class_daily, rollup_build_daily,
                  rollup_platform_daily, rollup_mce):
        conn.execute(delete(table).where(table.c.day >= first_day, table.c.day < end_day))
    weeks = (week_of(first_day), week_of(end_day - 1))
    months = (month_of(first_day), month_of(end_day - 1))
    spans = {"d": (first_day, end_day - 1), "w": weeks, "m": months}
    for table in (rollup_machines, rollup_population):
        for grain, (lo, hi) in spans.items():
            conn.execute(
                delete(table).where(
                    table.c.grain == grain, table.c.period >= lo, table.c.period <= hi
                )
            )
    mm = rollup_mce_machines.c
    conn.execute(delete(rollup_mce_machines).where(mm.week >= weeks[0], mm.week <= weeks[1]))
    mw = rollup_mce_machine_weeks.c
    conn.execute(
        delete(rollup_mce_machine_weeks).where(mw.week >= weeks[0], mw.week <= weeks[1])
    )
    head = (min(weeks[0], _month_start(months[0])), first_day)
    tail = (end_day, max(weeks[1] + 7, _next_month_start(months[1])))
    machines: set[Key] = set()
    mce_machines: Counter[Key] = Counter()
    r = records.c
    day = _day_sql(conn).label("day")
    for lo, hi in (head, tail):
        if hi <= lo:
            continue
        where = (handled, r.sender_flagged.is_not(True),
                 r.ts_reception >= lo * DAY, r.ts_reception < hi * DAY)
        found = conn.execute(
            select(day, r.build, r.machine_id).where(*where).group_by(day, r.build, r.machine_id)
        )
        for d, build, machine in found:
            week, month = week_of(int(d)), month_of(int(d))
            if weeks[0] <= week <= weeks[1]:
                machines.add(("w", week, build, machine))
            if months[0] <= month <= months[1]:
                machines.add(("m", month, build, machine))
        mce = conn.execute(
            select(day, r.classification, r.build, r.machine_id, func.count())
            .where(*where, r.classification.startswith(MCE_PREFIX, autoescape=True))
            .group_by(day, r.classification, r.build, r.machine_id)
        )
        for d, cls, build, machine, n in mce:
            week = week_of(int(d))
            if weeks[0] <= week <= weeks[1]:
                mce_machines[(week, cls, build, machine)] += int(n)
    _insert_absent(conn, rollup_machines, machines)
    _add_counts(conn, rollup_mce_machines, mce_machines, "count")
    _add_counts(conn, rollup_mce_machine_weeks, _machine_weeks(mce_machines), "count")
    m = rollup_machines.c
    for grain in ("w", "m"):
        lo, hi = spans[grain]
        conn.execute(
            insert(rollup_population).from_select(
                ["grain", "period", "build", "machines"],
                select(m.grain, m.period, m.build, func.count())
                .where(m.grain == grain, m.period >= lo, m.period <= hi)
                .group_by(m.grain, m.period, m.build),
            )
        )


def reset_crashes(conn: Connection, first_day: int, end_day: int) -> None:
    """Forget the crash rollups of the records received on days ``[first_day, end_day)``.

    The day-keyed tables lose those days; the all-time machine totals of every
    (group, build, machine) seen in the range are summed again from the days left.
    """
    if end_day <= first_day:
        return
    gm = rollup_guilty_machines
    totals = rollup_guilty_machine_totals
    key = (gm.c.guilty_id, gm.c.build, gm.c.machine_id)
    in_range = (gm.c.day >= first_day, gm.c.day < end_day)
    touched = select(*key).where(*in_range)
    conn.execute(
        delete(totals).where(
            tuple_(totals.c.guilty_id, totals.c.build, totals.c.machine_id).in_(touched)
        )
    )
    for table in (rollup_guilty, gm, *_SKETCHES):
        conn.execute(delete(table).where(table.c.day >= first_day, table.c.day < end_day))
    missing = ~exists().where(
        totals.c.guilty_id == gm.c.guilty_id,
        totals.c.build == gm.c.build,
        totals.c.machine_id == gm.c.machine_id,
    )
    conn.execute(
        insert(totals).from_select(
            _TOTAL_COLUMNS,
            select(*key, func.sum(gm.c.count), func.min(gm.c.day), func.max(gm.c.day))
            .where(missing)
            .group_by(*key),
        )
    )
