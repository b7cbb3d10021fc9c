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
When crash groups change (blacklist edits), :func:`move_crashes` moves the records
whose group changed from one group's rollups to the other's, in the transaction that
changes their ``guilty_id`` (so no dashboard ever shows a group emptied or half
rebuilt); :func:`rebuild_guilty_group` recomputes a group's rollups from its records
and :func:`rebuild_rollups` everything (migrations).

The statements are written as plain SQL: going through SQLAlchemy's per-parameter
compilation cost more than the database work at tens of thousands of rows per second.
SQLite gets multi-row ``VALUES``; PostgreSQL gets all rows as one JSON parameter
through ``json_populate_recordset`` (a short statement, the same for every batch).
"""

from __future__ import annotations

import re
import typing
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Integer,
    LargeBinary,
    Table,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
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
    rollup_mce_build_statuses,
    rollup_mce_daily,
    rollup_mce_machine_weeks,
    rollup_mce_machines,
    rollup_mce_statuses,
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
_SPAN_COLUMNS = ["count", "first_day", "last_day"]

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
    rollup_mce_daily,
    rollup_mce_statuses,
    rollup_mce_build_statuses,
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


def _guilty_upsert(conn: Connection, seen: dict[Cell, list[float]]) -> None:
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


def _crash_cells(rows: Iterable[Row]) -> tuple[dict[Cell, list[float]], Counter[Key]]:
    """The crash records (those with a ``guilty_id``) by (day, guilty_id, build):
    ``[count, first, last]``; and their counts by (day, guilty_id, build, machine)."""
    seen: dict[Cell, list[float]] = {}
    machines: Counter[Key] = Counter()
    for r in rows:
        gid = r.get("guilty_id")
        if gid is None:
            continue
        ts = float(r["ts_reception"])
        key = (day_of(ts), int(gid), r["build"])
        v = seen.get(key)
        if v is None:
            seen[key] = [1.0, ts, ts]
        else:
            v[0] += 1
            v[1] = min(v[1], ts)
            v[2] = max(v[2], ts)
        machines[(*key, r["machine_id"])] += 1
    return seen, machines


def _update_guilty(conn: Connection, rows: Iterable[Row], *, later_tables: bool = True) -> None:
    seen, machines = _crash_cells(rows)
    per_group: dict[Cell, sketch.Updates] = {}
    per_build: dict[Cell, sketch.Updates] = {}
    for day, gid, build, machine in machines:
        sketch.add(per_group.setdefault((day, gid), {}), str(machine))
        sketch.add(per_build.setdefault((day, gid, build), {}), str(machine))
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
    _add_mce(conn, mce)
    _add_counts(conn, rollup_mce_machines, mce_machines, "count")
    _add_counts(conn, rollup_mce_machine_weeks, _machine_weeks(mce_machines), "count")


def _add_mce(conn: Connection, mce: Counter[Key]) -> None:
    """Add (day, class, build, status) counts to ``rollup_mce``, to ``rollup_mce_daily``
    (without the status) and, for the MCE classes, to the status totals."""
    daily: Counter[Key] = Counter()
    statuses: dict[Key, list[int]] = {}
    build_statuses: dict[Key, list[int]] = {}
    for (cell_day, cls, build, status), n in mce.items():
        day = typing.cast(int, cell_day)
        daily[(day, cls, build)] += n
        if cls in MCE_CLASSES:
            for spans, key in ((statuses, (status,)), (build_statuses, (build, status))):
                v = spans.get(key)
                if v is None:
                    spans[key] = [n, day, day]
                else:
                    v[0] += n
                    v[1] = min(v[1], day)
                    v[2] = max(v[2], day)
    _add_counts(conn, rollup_mce, mce, "count")
    _add_counts(conn, rollup_mce_daily, daily, "count")
    _add_spans(conn, rollup_mce_statuses, statuses)
    _add_spans(conn, rollup_mce_build_statuses, build_statuses)


def _add_spans(conn: Connection, table: Table, spans: Mapping[Key, list[int]]) -> None:
    """Upsert all-time totals: key -> [count, first_day, last_day], counts added, days
    widened."""
    if not spans:
        return
    keys = _keys(table)
    t = table.name
    tail = (
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        f"count = {t}.count + excluded.count, "
        f"first_day = CASE WHEN {t}.first_day <= excluded.first_day "
        f"THEN {t}.first_day ELSE excluded.first_day END, "
        f"last_day = CASE WHEN {t}.last_day >= excluded.last_day "
        f"THEN {t}.last_day ELSE excluded.last_day END"
    )
    rows: list[Key] = [(*k, *v) for k, v in spans.items()]
    _run(conn, table, [*keys, *_SPAN_COLUMNS], rows, tail)


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


def move_crashes(
    conn: Connection, moved: Sequence[tuple[Row, int | None]], handled: ColumnElement[bool]
) -> None:
    """Move crash records from the group they were counted in to their new one.

    ``moved`` pairs each record (as stored now: ``records.guilty_id`` already holds
    its new group) with the group it was counted in (None: none). In the caller's
    transaction, so the dashboards see each record in exactly one group at every
    moment: counts are subtracted and added; a group's day that lost its earliest or
    latest crash reads the new one from ``records`` (those matching ``handled``: the
    crash consumer's, up to its cursor); machine totals are summed again from the
    machine rows left; a machine sketch that may have lost its maximum register is
    rebuilt from its machine rows; rows left empty are deleted. The result equals
    :func:`rebuild_guilty_group` of every group involved. Flagged records are not
    counted, so they move nowhere.
    """
    counted = [(r, old) for r, old in moved if not r.get("sender_flagged")]
    _remove_guilty(conn, [{**r, "guilty_id": old} for r, old in counted if old is not None],
                   handled)
    _update_guilty(conn, [r for r, _ in counted if r.get("guilty_id") is not None])


def _remove_guilty(conn: Connection, rows: Sequence[Row], handled: ColumnElement[bool]) -> None:
    cells, machines = _crash_cells(rows)
    if not cells:
        return
    _remove_from_cells(conn, cells, handled)
    gone = _remove_machines(conn, machines)
    totals = sorted({(g, b, m) for _, g, b, m in machines})
    t = rollup_guilty_machine_totals
    key_t = tuple_(t.c.guilty_id, t.c.build, t.c.machine_id)
    gm = rollup_guilty_machines.c
    key_m = tuple_(gm.guilty_id, gm.build, gm.machine_id)
    for part in _parts(totals):
        conn.execute(delete(t).where(key_t.in_(part)))
        conn.execute(
            insert(t).from_select(
                _TOTAL_COLUMNS,
                select(gm.guilty_id, gm.build, gm.machine_id, func.sum(gm.count),
                       func.min(gm.day), func.max(gm.day))
                .where(key_m.in_(part))
                .group_by(gm.guilty_id, gm.build, gm.machine_id),
            )
        )
    _shrink_sketches(conn, gone)


def _parts(keys: Sequence[Any], size: int = 500) -> Iterable[list[Any]]:
    """``keys`` in parts small enough for one statement's parameters."""
    for start in range(0, len(keys), size):
        yield list(keys[start : start + size])


def _remove_from_cells(
    conn: Connection, cells: dict[Cell, list[float]], handled: ColumnElement[bool]
) -> None:
    g = rollup_guilty.c
    key = tuple_(g.day, g.guilty_id, g.build)
    stored: dict[Cell, tuple[int, float, float]] = {}
    for part in _parts(sorted(cells)):
        found = conn.execute(
            select(g.day, g.guilty_id, g.build, g.count, g.first_seen, g.last_seen)
            .where(key.in_(part))
        )
        for d, gid, b, n, lo, hi in found:
            stored[(int(d), int(gid), b)] = (int(n), float(lo), float(hi))
    emptied: list[dict[str, Any]] = []
    kept: list[tuple[Cell, int, float, float]] = []
    stale: list[Cell] = []  # cells whose earliest or latest crash left
    for cell, (n, lo, hi) in sorted(stored.items()):
        removed, first, last = cells[cell]
        left = n - int(removed)
        if left <= 0:
            emptied.append({"kd": cell[0], "kg": cell[1], "kb": cell[2]})
            continue
        if first <= lo or last >= hi:
            stale.append(cell)
        kept.append((cell, left, lo, hi))
    extremes = _extremes(conn, stale, handled)
    updated: list[dict[str, Any]] = []
    for cell, left, lo, hi in kept:
        read = extremes.get(cell)
        if read is not None:
            lo, hi = read
        updated.append({"kd": cell[0], "kg": cell[1], "kb": cell[2], "n": left, "lo": lo, "hi": hi})
    match = (g.day == bindparam("kd"), g.guilty_id == bindparam("kg"), g.build == bindparam("kb"))
    if emptied:
        conn.execute(delete(rollup_guilty).where(*match), emptied)
    if updated:
        conn.execute(
            update(rollup_guilty)
            .where(*match)
            .values(count=bindparam("n"), first_seen=bindparam("lo"), last_seen=bindparam("hi")),
            updated,
        )


def _extremes(
    conn: Connection, cells: Sequence[Cell], handled: ColumnElement[bool]
) -> dict[Cell, tuple[float, float]]:
    """The first and last crash left in each (day, guilty_id, build) of ``cells``.

    One grouped statement per 500 groups (over the groups' records of the cells' days,
    found through the ``guilty_id`` index), not one per cell: a step that moves a
    large group's records re-reads many of its days.
    """
    if not cells:
        return {}
    wanted = set(cells)
    r = records.c
    day = _day_sql(conn).label("day")
    first_day = min(c[0] for c in cells)
    last_day = max(c[0] for c in cells)
    builds = sorted({c[2] for c in cells})
    found: dict[Cell, tuple[float, float]] = {}
    for gids in _parts(sorted({c[1] for c in cells})):
        rows = conn.execute(
            select(day, r.guilty_id, r.build, func.min(r.ts_reception),
                   func.max(r.ts_reception))
            .where(r.guilty_id.in_(gids), r.build.in_(builds), handled,
                   r.sender_flagged.is_not(True),
                   r.ts_reception >= first_day * DAY, r.ts_reception < (last_day + 1) * DAY)
            .group_by(day, r.guilty_id, r.build)
        )
        for d, gid, build, lo, hi in rows:
            cell = (int(d), int(gid), build)
            if cell in wanted:
                found[cell] = (float(lo), float(hi))
    return found


def _remove_machines(conn: Connection, machines: Counter[Key]) -> list[Key]:
    """Subtract crashes per (day, group, build, machine); return the rows emptied."""
    m = rollup_guilty_machines.c
    key = tuple_(m.day, m.guilty_id, m.build, m.machine_id)
    stored: dict[Key, int] = {}
    for part in _parts(sorted(machines)):
        found = conn.execute(
            select(m.day, m.guilty_id, m.build, m.machine_id, m.count).where(key.in_(part))
        )
        for d, gid, b, machine, n in found:
            stored[(int(d), int(gid), b, machine)] = int(n)
    gone: list[Key] = []
    updated: list[dict[str, Any]] = []
    for k, n in sorted(stored.items()):
        left = n - machines[k]
        if left <= 0:
            gone.append(k)
        else:
            updated.append({"kd": k[0], "kg": k[1], "kb": k[2], "km": k[3], "n": left})
    match = (m.day == bindparam("kd"), m.guilty_id == bindparam("kg"),
             m.build == bindparam("kb"), m.machine_id == bindparam("km"))
    if gone:
        conn.execute(
            delete(rollup_guilty_machines).where(*match),
            [{"kd": d, "kg": g, "kb": b, "km": mid} for d, g, b, mid in gone],
        )
    if updated:
        conn.execute(update(rollup_guilty_machines).where(*match).values(count=bindparam("n")),
                     updated)
    return gone


def _shrink_sketches(conn: Connection, gone: Sequence[Key]) -> None:
    """Rebuild the sketches that may have lost a machine's register (or delete them).

    A sketch keeps each register's maximum over its machines, so removing a machine
    changes it only when that machine's rank equals the stored register: only those
    cells are read again from ``rollup_guilty_machines`` (the rows left), in a few
    statements for the whole batch.
    """
    if not gone:
        return
    lost: dict[Cell, list[str]] = {}  # (day, gid) and (day, gid, build) -> machines
    for day, gid, build, machine in gone:
        lost.setdefault((day, gid), []).append(str(machine))
        lost.setdefault((day, gid, build), []).append(str(machine))
    stale: set[Cell] = set()
    for table, width in ((rollup_guilty_sketch, 2), (rollup_guilty_build_sketch, 3)):
        cells = sorted(c for c in lost if len(c) == width)
        stored: dict[Cell, bytes] = {}
        key = tuple_(*(table.c[k] for k in _keys(table)))
        for part in _parts(cells):
            for row in conn.execute(
                select(*(table.c[k] for k in _keys(table)), table.c.registers)
                .where(key.in_(part))
            ):
                stored[tuple(row[:-1])] = row[-1]
        for cell in cells:
            blob = stored.get(cell)
            if blob is None:
                continue
            regs = sketch.registers(blob)
            if any(regs[i] <= rank for i, rank in map(sketch.register_of, lost[cell])):
                stale.add(cell)
    if not stale:
        return
    # The machines left in the stale cells' (day, group)s, every build.
    m = rollup_guilty_machines.c
    groups = sorted({c[:2] for c in stale})
    fresh: dict[Cell, bytearray] = {}
    for part in _parts(groups):
        found = conn.execute(
            select(m.day, m.guilty_id, m.build, m.machine_id)
            .where(tuple_(m.day, m.guilty_id).in_(part))
        )
        for day, gid, build, machine in found:
            i, rank = sketch.register_of(str(machine))
            targets: tuple[Cell, Cell] = ((int(day), int(gid)), (int(day), int(gid), build))
            for target in targets:
                if target in stale:
                    regs = fresh.setdefault(target, bytearray(sketch.M))
                    if regs[i] < rank:
                        regs[i] = rank
    for table, width in ((rollup_guilty_sketch, 2), (rollup_guilty_build_sketch, 3)):
        cells = sorted(c for c in stale if len(c) == width)
        keys = _keys(table)
        match = [table.c[k] == bindparam(f"k_{k}") for k in keys]
        conn.execute(delete(table).where(*match),
                     [{f"k_{k}": v for k, v in zip(keys, c, strict=True)} for c in cells])
        rows: list[Key] = [(*c, sketch.encode(fresh[c])) for c in cells if c in fresh]
        if rows:
            _run(conn, table, [*keys, "registers"], rows, "")


_SKETCHES = (rollup_guilty_sketch, rollup_guilty_build_sketch)
# Every rollup of one crash group (emptied and refilled together when it is rebuilt).
_GROUP_TABLES = (rollup_guilty, rollup_guilty_machines, rollup_guilty_machine_totals, *_SKETCHES)
# Created after migration 0003 (see rebuild_rollups).
_LATER = (
    *_SKETCHES,
    rollup_guilty_machine_totals,
    rollup_mce_machine_weeks,
    rollup_mce_daily,
    rollup_mce_statuses,
    rollup_mce_build_statuses,
)


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
    _forget_status_totals(conn, first_day, end_day)
    for table in (rollup_daily, rollup_class_daily, rollup_build_daily,
                  rollup_platform_daily, rollup_mce, rollup_mce_daily):
        conn.execute(delete(table).where(table.c.day >= first_day, table.c.day < end_day))
    _sum_status_totals(conn)
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


def _forget_status_totals(conn: Connection, first_day: int, end_day: int) -> None:
    """Delete the status totals of every (build, status) with MCE events in the days
    ``[first_day, end_day)`` (before those days' ``rollup_mce`` rows go)."""
    m = rollup_mce.c
    in_range = (m.day >= first_day, m.day < end_day, m.classification.in_(MCE_CLASSES))
    s, b = rollup_mce_statuses, rollup_mce_build_statuses
    conn.execute(delete(s).where(s.c.status.in_(select(m.status).where(*in_range))))
    conn.execute(
        delete(b).where(
            tuple_(b.c.build, b.c.status).in_(select(m.build, m.status).where(*in_range))
        )
    )


def _sum_status_totals(conn: Connection) -> None:
    """Insert the status totals missing, summed from the ``rollup_mce`` rows left."""
    m = rollup_mce.c
    for table, key in ((rollup_mce_statuses, (m.status,)),
                       (rollup_mce_build_statuses, (m.build, m.status))):
        missing = ~exists().where(*(table.c[k.name] == k for k in key))
        conn.execute(
            insert(table).from_select(
                [k.name for k in key] + _SPAN_COLUMNS,
                select(*key, func.sum(m.count), func.min(m.day), func.max(m.day))
                .where(m.classification.in_(MCE_CLASSES), missing)
                .group_by(*key),
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
