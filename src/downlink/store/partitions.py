"""Monthly range partitions of ``records`` on PostgreSQL (opt-in: ``downlink partition``).

A partitioned ``records`` is split by ``ts_reception`` (the server's clock, so a month's
partition stops growing when the month ends) into one table per calendar month (UTC),
declared with PostgreSQL's declarative partitioning. What changes, and why it holds:

* **Keys.** A partitioned table's unique keys must contain the partition key: the
  primary key becomes ``(id, ts_reception)`` (ids still come from ``records_id_seq``,
  so ``id`` alone stays unique in practice and every ``WHERE id = …`` finds one row),
  and ``dedup_key`` has a plain index. Retransmissions are still stored once: the keys
  move to the unpartitioned ``records_keys`` (store/partition_keys.py), where the writer
  claims each batch's keys before it inserts, so two worker processes cannot both
  insert one key, and a batch without retransmissions never probes the partitions.
* **Foreign keys.** ``records.guilty_id → guilty.id`` stays (a partitioned table may
  refer to others); nothing refers to ``records``.
* **Commit-order following** (``store/follow.py``) reads ``(txid, id)`` with the
  parent's ``txid`` default and ``ix_records_follow`` index, both inherited by every
  partition: nothing changes for consumers.
* **Partitions ahead.** Each server creates the partitions of this month and the next
  :data:`AHEAD` months (``Maintenance``, every hour and at start; one advisory lock
  so that workers do not race). A row whose month has no partition would be refused,
  which is why they are made months before they are needed.
* **Retention** (``store/retention.py``) drops a whole partition once all of it is
  older than the cut-off and it holds no row the purge must keep (another source's, an
  audit record), instead of deleting its rows one batch at a time; the keys of its
  rows are deleted from ``records_keys`` in the same transaction.

Converting a live table (:func:`convert`, ``downlink partition records``) never holds
a lock that stops ingestion for longer than a rename: the old table becomes the first
partition, ``[MINVALUE, boundary)``, with its data and indexes as they are:

1. ``CREATE UNIQUE INDEX CONCURRENTLY`` on ``(id, ts_reception)`` and ``CREATE INDEX
   CONCURRENTLY`` on ``dedup_key`` (what the parent's keys need), without blocking
   writes;
2. a ``CHECK (ts_reception < boundary)`` constraint added ``NOT VALID`` and then
   validated (a scan that does not block writes), so that attaching needs no scan;
3. the partitioned twin ``records_partitioned`` with the same columns, defaults, keys,
   indexes and foreign key, and its monthly partitions from ``boundary`` on;
4. the retransmission keys of every stored row copied into ``records_keys`` in chunks,
   without blocking writes (store/partition_keys.py);
5. one short transaction (``lock_timeout``, retried): copy the keys written since
   step 4, rename ``records`` to ``records_legacy`` and the twin to ``records``, hand
   the id sequence to the new parent, attach the old table (its equivalent indexes
   are attached, not rebuilt).

``boundary`` is the first day of next month (of the month after if less than a day is
left), so the old table keeps taking every record until the swap.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from downlink.store import partition_keys

log = logging.getLogger(__name__)

TABLE = "records"
COLUMN = "ts_reception"
AHEAD = 2
LEGACY = "records_legacy"
TWIN = "records_partitioned"
_LOCK_KEY = 0x646C_7061_7274  # "dlpart": serialises partition maintenance
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class PartitionError(RuntimeError):
    """A partitioning step that cannot be done (told to the operator as is)."""


@dataclass(frozen=True)
class Partition:
    """One partition: its name and its range of ``ts_reception`` (None: unbounded)."""

    name: str
    lower: float | None
    upper: float | None
    rows: int = 0


def month_start(ts: float) -> float:
    """The start (UTC, epoch seconds) of the month holding ``ts``."""
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def next_month(start: float) -> float:
    """The start of the month after the one starting at ``start``."""
    d = datetime.fromtimestamp(start, UTC)
    days = calendar.monthrange(d.year, d.month)[1]
    return month_start(start + days * 86400.0 + 3600.0)


def partition_name(start: float) -> str:
    """``records_pYYYYMM`` for the month starting at ``start``."""
    d = datetime.fromtimestamp(start, UTC)
    return f"{TABLE}_p{d.year:04d}{d.month:02d}"


def is_partitioned(conn: Connection, table: str = TABLE) -> bool:
    """True when ``table`` is a partitioned table (always False on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
             "WHERE partrelid = to_regclass(:t))"),
        {"t": table},
    ).scalar_one()
    return bool(found)


_BOUND = re.compile(r"FROM \((.+)\) TO \((.+)\)")


def _bound(value: str) -> float | None:
    value = value.strip().strip("'")
    return None if value.upper() in ("MINVALUE", "MAXVALUE") else float(value)


def partitions(conn: Connection, table: str = TABLE) -> list[Partition]:
    """The partitions of ``table``, oldest first, with estimated row counts."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), "
            "GREATEST(c.reltuples, 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).all()
    out: list[Partition] = []
    for name, bound, estimate in rows:
        found = _BOUND.search(str(bound))
        if found is None:  # a DEFAULT partition: not made by Downlink
            out.append(Partition(str(name), None, None, int(estimate)))
            continue
        out.append(Partition(str(name), _bound(found[1]), _bound(found[2]), int(estimate)))
    return sorted(out, key=lambda p: (p.lower is not None, p.lower or 0.0))


def _overlaps(existing: Iterable[Partition], lower: float, upper: float) -> bool:
    for p in existing:
        lo = float("-inf") if p.lower is None else p.lower
        hi = float("inf") if p.upper is None else p.upper
        if lo < upper and lower < hi:
            return True
    return False


def _create_months(conn: Connection, parent: str, first: float, until: float,
                   existing: list[Partition]) -> list[str]:
    made: list[str] = []
    start = first
    while start < until:
        end = next_month(start)
        if not _overlaps(existing, start, end):
            name = partition_name(start)
            conn.execute(text(
                f'CREATE TABLE "{name}" PARTITION OF "{parent}" '
                f"FOR VALUES FROM ({start!r}) TO ({end!r})"
            ))
            made.append(name)
        start = end
    return made


def ensure_ahead(conn: Connection, now: float | None = None, ahead: int = AHEAD) -> list[str]:
    """Create the missing partitions of this month and the next ``ahead``; their names.

    Does nothing unless ``records`` is partitioned. Serialised by an advisory lock
    (every worker process runs it); waits at most 1 s for the table's lock (ingestion
    queues behind a waiting lock request), else the next run tries again.
    """
    if not is_partitioned(conn):
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    conn.execute(text("SET LOCAL lock_timeout = '1s'"))
    now = time.time() if now is None else now
    first = month_start(now)
    until = first
    for _ in range(ahead + 1):
        until = next_month(until)
    return _create_months(conn, TABLE, first, until, partitions(conn))


def add_months(conn: Connection, first: float, until: float) -> list[str]:
    """Create the partitions of the months from ``first`` to ``until`` (an operator's
    back-fill of past months, where no partition covers them yet)."""
    if not is_partitioned(conn):
        raise PartitionError(f"{TABLE} is not partitioned")
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    return _create_months(conn, TABLE, month_start(first), until, partitions(conn))


def drop_expired(conn: Connection, cutoff: float, keeps: str | None) -> tuple[list[str], int]:
    """Drop the partitions wholly older than ``cutoff`` holding no row to keep.

    ``keeps`` is a SQL condition on ``records`` naming the rows a purge must keep (None:
    none). Each partition is locked against inserts (``SHARE``) before it is checked,
    so no row slips in between the check and the drop. Returns the dropped names and
    how many rows they held. A partition whose lock is not granted in 1 s is left for
    the next run (its rows are purged the ordinary way meanwhile).
    """
    if not is_partitioned(conn):
        return [], 0
    dropped: list[str] = []
    rows = 0
    for p in partitions(conn):
        if p.upper is None or p.upper > cutoff or not _NAME.match(p.name):
            continue
        within = f"{COLUMN} < {p.upper!r}"
        if p.lower is not None:
            within += f" AND {COLUMN} >= {p.lower!r}"
        savepoint = conn.begin_nested()
        try:
            conn.execute(text("SET LOCAL lock_timeout = '1s'"))
            conn.execute(text(f'LOCK TABLE "{p.name}" IN SHARE MODE'))
            if keeps is not None:
                kept = conn.execute(text(
                    f"SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE {within} AND ({keeps}))"
                )).scalar_one()
                if kept:
                    savepoint.rollback()
                    continue
            count = conn.execute(text(f'SELECT count(*) FROM "{p.name}"')).scalar_one()
            conn.execute(text(f'DROP TABLE "{p.name}"'))
            partition_keys.forget_range(conn, p.lower, p.upper)
            savepoint.commit()
        except OperationalError as exc:
            savepoint.rollback()
            log.warning("partition %s not dropped now: %s", p.name, exc.orig)
            continue
        dropped.append(p.name)
        rows += int(count)
    return dropped, rows


def default_boundary(now: float | None = None) -> float:
    """Where the old table's range ends: next month (the one after, if it is a day off)."""
    now = time.time() if now is None else now
    boundary = next_month(month_start(now))
    if boundary - now < 86400.0:
        boundary = next_month(boundary)
    return boundary


def _autocommit(engine: Engine, statement: str) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(statement))


def _index_defs(conn: Connection) -> list[tuple[str, str]]:
    """``(name, CREATE INDEX …)`` of the old table's indexes the parent must also have."""
    rows = conn.execute(text(
        "SELECT ci.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class ci ON ci.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(:t) AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
    ), {"t": TABLE}).all()
    return [(str(n), str(d)) for n, d in rows if not str(n).startswith("records_part_")]


def convert(engine: Engine, *, boundary: float | None = None, ahead: int = AHEAD,
            say: object = None) -> list[Partition]:
    """Turn ``records`` into a partitioned table without stopping ingestion.

    ``boundary`` (default :func:`default_boundary`) must be later than any record the
    old table takes before the swap; the steps are in this module's docstring.
    """
    def step(message: str) -> None:
        if callable(say):
            say(message)
        log.info("partition records: %s", message)

    boundary = default_boundary() if boundary is None else boundary
    if boundary != month_start(boundary):
        raise PartitionError("the boundary must be the first second of a month (UTC)")
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            raise PartitionError("partitioning needs PostgreSQL (DATABASE_URL is SQLite)")
        if is_partitioned(conn):
            raise PartitionError("records is already partitioned")
        newest = conn.execute(text(f"SELECT max({COLUMN}) FROM {TABLE}")).scalar_one()
        if newest is not None and float(newest) >= boundary:
            raise PartitionError("records holds rows at or after the boundary")
        defs = _index_defs(conn)
    step("indexing (id, ts_reception) and dedup_key concurrently")
    _autocommit(engine, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS records_part_key "
                        f"ON {TABLE} (id, {COLUMN})")
    _autocommit(engine, "CREATE INDEX CONCURRENTLY IF NOT EXISTS records_part_dedup "
                        f"ON {TABLE} (dedup_key)")
    step("checking every row is before the boundary (without blocking writes)")
    with engine.begin() as conn:
        # A conversion that stopped half-way is started again from here.
        conn.execute(text(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS records_legacy_range"))
        conn.execute(text(f"ALTER TABLE {TABLE} ADD CONSTRAINT records_legacy_range "
                          f"CHECK ({COLUMN} < {boundary!r}) NOT VALID"))
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT records_legacy_range"))
    step("creating the partitioned twin and its months")
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TWIN}"))
        conn.execute(text(
            f"CREATE TABLE {TWIN} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            f"INCLUDING STORAGE) PARTITION BY RANGE ({COLUMN})"
        ))
        conn.execute(text(f"ALTER TABLE {TWIN} DROP CONSTRAINT records_legacy_range"))
        conn.execute(text(f"ALTER TABLE {TWIN} ADD CONSTRAINT pk_records_part "
                          f"PRIMARY KEY (id, {COLUMN})"))
        conn.execute(text(f"CREATE INDEX records_part_dedup_p ON {TWIN} (dedup_key)"))
        for statement in partition_keys.CREATE:
            conn.execute(text(statement))
        conn.execute(text(partition_keys.trigger(TWIN)))
        conn.execute(text(f"ALTER TABLE {TWIN} ADD CONSTRAINT fk_records_guilty_id_guilty "
                          "FOREIGN KEY (guilty_id) REFERENCES guilty (id)"))
        for name, definition in defs:
            twin_def = definition.replace(f" ON public.{TABLE} ", f" ON public.{TWIN} ", 1)
            twin_def = twin_def.replace(f"INDEX {name} ", f"INDEX {name}_p ", 1)
            conn.execute(text(twin_def))
        until = boundary
        for _ in range(ahead + 1):
            until = next_month(until)
        _create_months(conn, TWIN, boundary, until, [])
    step("copying the retransmission keys (without blocking writes)")
    horizon = partition_keys.backfill(engine, TABLE, step)
    step("swapping the tables (a short exclusive lock)")
    for attempt in range(50):
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '1s'"))
                conn.execute(text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
                # The keys of the rows committed since the copy's last pass.
                partition_keys.catch_up(conn, TABLE, horizon)
                conn.execute(text(f"ALTER TABLE {TABLE} RENAME TO {LEGACY}"))
                conn.execute(text(f"ALTER TABLE {TWIN} RENAME TO {TABLE}"))
                seq = conn.execute(text(
                    f"SELECT pg_get_serial_sequence('{LEGACY}', 'id')")).scalar_one()
                # The parent owns the id sequence now: dropping the old partition one
                # day cannot drop the sequence with it.
                conn.execute(text(f"ALTER SEQUENCE {seq} OWNED BY {TABLE}.id"))
                # The parent's key (id, ts_reception) becomes the old table's, from the
                # unique index built concurrently (no scan, no build here).
                conn.execute(text(f"ALTER TABLE {LEGACY} DROP CONSTRAINT pk_records, "
                                  "ADD CONSTRAINT records_part_key PRIMARY KEY "
                                  "USING INDEX records_part_key"))
                conn.execute(text(
                    f"ALTER TABLE {TABLE} ATTACH PARTITION {LEGACY} "
                    f"FOR VALUES FROM (MINVALUE) TO ({boundary!r})"
                ))
                for name, _definition in defs:
                    conn.execute(text(f"ALTER INDEX {name} RENAME TO {name}_legacy"))
                    conn.execute(text(f"ALTER INDEX {name}_p RENAME TO {name}"))
            break
        except OperationalError as exc:
            if "lock timeout" not in str(exc.orig) or attempt == 49:
                raise
            step("the swap waited 1 s for the lock; retrying")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"ANALYZE {TABLE}"))
        return partitions(conn)
