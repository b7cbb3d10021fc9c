"""Read a table in commit order: what a consumer has not handled yet, exactly once.

A consumer's cursor is a pair ``(txid, id)``. Rows are read in ``(txid, id)`` order,
and only rows whose writing transaction ended before every transaction still running:

* **PostgreSQL.** Several worker processes (and admin writes) commit concurrently, so
  a row with a smaller id can become visible after one with a larger id: following by
  id alone would skip it. A followed table carries ``txid xid8 DEFAULT
  pg_current_xact_id()`` (the writing transaction's id; NULL, read as 0, for rows
  stored before the column existed) and an index on ``(COALESCE(txid, '0'), id)``.
  One statement reads the rows after the cursor with ``txid <
  pg_snapshot_xmin(pg_current_snapshot())``: every transaction with a smaller id has
  ended (committed rows are in the statement's snapshot, aborted ones never will be),
  and every transaction still running, or starting later, has a txid at or above
  that bound, so above the cursor the read leaves. No row is skipped and none is read
  twice. The cost: a transaction that stays open holds rows of later transactions
  back until it ends (the consumer's lag shows it).
* **SQLite.** One transaction writes at a time (``BEGIN IMMEDIATE``), so ids are
  handed out in commit order and ``txid`` is always 0. SQLite reuses the id of a
  deleted row that had the largest id, which would put a new row behind the cursor:
  a followed table of a source is declared with ``sqlite_autoincrement=True``, and the
  retention purge of ``records`` (declared before consumers existed) lowers the
  cursors above the largest id left, in its own transaction (:func:`clamp_cursors`):
  every row up to that id was handled, and the next one gets a larger id.

A source's migration adds the PostgreSQL column and index to a table it wants
followed (copy these two statements; a migration does not import this module)::

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE t ADD COLUMN txid xid8 DEFAULT pg_current_xact_id()")
        op.execute("CREATE INDEX ix_t_follow ON t ((COALESCE(txid, '0'::xid8)), id)")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, func, literal_column, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from downlink.store.tables import consumers

COLUMN = "txid"
_TXID: ColumnElement[Any] = literal_column("COALESCE(txid, '0'::xid8)")
_HORIZON: ColumnElement[Any] = literal_column("pg_snapshot_xmin(pg_current_snapshot())")


class Cursor(NamedTuple):
    """Where a consumer stands: the last row handled, by (transaction id, row id)."""

    txid: int
    id: int


START = Cursor(0, 0)


class Followed(NamedTuple):
    """Rows read after a cursor, with the cursor of the last one."""

    rows: list[dict[str, Any]]
    cursor: Cursor


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _after(table: Table, cursor: Cursor, *, pg: bool) -> ColumnElement[bool]:
    if not pg:
        return table.c.id > cursor.id
    bound: ColumnElement[Any] = literal_column(f"CAST('{int(cursor.txid)}' AS xid8)")
    return tuple_(_TXID, table.c.id) > tuple_(bound, cursor.id)


def read_after(conn: Connection, table: Table, cursor: Cursor, limit: int) -> Followed:
    """Return up to ``limit`` committed rows after ``cursor``, in commit order.

    Rows are the table's declared columns (``txid`` left out).
    """
    pg = _pg(conn)
    cols: list[Any] = list(table.columns)
    if pg:
        cols.append(literal_column("CAST(CAST(COALESCE(txid, '0'::xid8) AS text) AS bigint)")
                    .label("_txid"))
        stmt = (
            select(*cols)
            .where(_after(table, cursor, pg=True), _TXID < _HORIZON)
            .order_by(_TXID, table.c.id)
            .limit(limit)
        )
    else:
        stmt = select(*cols).where(_after(table, cursor, pg=False)).order_by(table.c.id)
        stmt = stmt.limit(limit)
    rows: list[dict[str, Any]] = []
    last = cursor
    for found in conn.execute(stmt).mappings():
        row = dict(found)
        txid = int(row.pop("_txid")) if pg else 0
        last = Cursor(txid, int(row["id"]))
        rows.append(row)
    return Followed(rows, last)


def has_after(conn: Connection, table: Table, cursor: Cursor) -> bool:
    """Whether a committed row waits after ``cursor`` (a cheap read for idle polls)."""
    pg = _pg(conn)
    stmt = select(table.c.id).where(_after(table, cursor, pg=pg))
    if pg:
        stmt = stmt.where(_TXID < _HORIZON).order_by(_TXID, table.c.id)
    return conn.execute(stmt.limit(1)).first() is not None


def lag(
    conn: Connection, table: Table, ts_column: str, cursor: Cursor, *, cap: int = 1_000_000
) -> tuple[int, float | None]:
    """Rows stored after ``cursor`` (at most ``cap``) and the reception time of the first.

    Counts every committed row, including those of transactions a read would still
    hold back, so zero means caught up with everything committed.
    """
    pg = _pg(conn)
    after = _after(table, cursor, pg=pg)
    order: Sequence[Any] = (_TXID, table.c.id) if pg else (table.c.id,)
    first = conn.execute(
        select(table.c[ts_column]).where(after).order_by(*order).limit(1)
    ).first()
    if first is None:
        return 0, None
    capped = select(table.c.id).where(after).limit(cap).subquery()
    n = conn.execute(select(func.count()).select_from(capped)).scalar_one()
    return int(n), float(first[0])


def last(conn: Connection, table: Table) -> Cursor:
    """The cursor of the last committed row of ``table`` in commit order (START if
    empty). Rows of transactions still running are not seen: call it with none."""
    if _pg(conn):
        txid: ColumnElement[Any] = literal_column(
            "CAST(CAST(COALESCE(txid, '0'::xid8) AS text) AS bigint)"
        )
        found = conn.execute(
            select(txid, table.c.id).order_by(_TXID.desc(), table.c.id.desc()).limit(1)
        ).first()
    else:
        found = conn.execute(select(literal_column("0"), table.c.id)
                             .order_by(table.c.id.desc()).limit(1)).first()
    return START if found is None else Cursor(int(found[0]), int(found[1]))


def has_column(conn: Connection, table: Table) -> bool:
    """Whether ``table`` can be followed here (on PostgreSQL: it has the txid column)."""
    if not _pg(conn):
        return True
    found = conn.exec_driver_sql(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
        (table.name, COLUMN),
    ).first()
    return found is not None


def _up_to(table: Table, boundary: Cursor, *, pg: bool) -> ColumnElement[bool]:
    if not pg:
        return table.c.id <= boundary.id
    bound: ColumnElement[Any] = literal_column(f"CAST('{int(boundary.txid)}' AS xid8)")
    return tuple_(_TXID, table.c.id) <= tuple_(bound, boundary.id)


def up_to(conn: Connection, table: Table, boundary: Cursor) -> ColumnElement[bool]:
    """The condition "at or before ``boundary`` in commit order" on ``table``'s rows
    (what a consumer whose cursor is ``boundary`` has applied)."""
    return _up_to(table, boundary, pg=_pg(conn))


def _in_range(
    table: Table,
    ts_column: str,
    since: float | None,
    until: float | None,
    boundary: Cursor | None,
    *,
    pg: bool,
) -> list[ColumnElement[bool]]:
    ts = table.c[ts_column]
    where: list[ColumnElement[bool]] = []
    if since is not None:
        where.append(ts >= since)
    if until is not None:
        where.append(ts < until)
    if boundary is not None:
        where.append(_up_to(table, boundary, pg=pg))
    return where


def read_range(
    conn: Connection,
    table: Table,
    ts_column: str,
    since: float | None,
    until: float | None,
    boundary: Cursor,
    after_id: int,
    limit: int,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[dict[str, Any]]:
    """Rows received in ``[since, until)`` (None: unbounded) at or before ``boundary``
    and matching ``where``, by id after ``after_id`` (a reprocess walks them chunk by
    chunk)."""
    found = _in_range(table, ts_column, since, until, boundary, pg=_pg(conn))
    stmt = (
        select(table)
        .where(*found, *where, table.c.id > after_id)
        .order_by(table.c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]


def count_range(
    conn: Connection,
    table: Table,
    ts_column: str,
    since: float | None,
    until: float | None,
    boundary: Cursor | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> int:
    """How many rows were received in ``[since, until)`` (None: unbounded), at or before
    ``boundary``, matching ``where``."""
    found = _in_range(table, ts_column, since, until, boundary, pg=_pg(conn))
    stmt = select(func.count()).select_from(table).where(*found, *where)
    return int(conn.execute(stmt).scalar_one())


def clamp_cursors(conn: Connection, table: Table) -> None:
    """SQLite: after a delete from ``table``, lower the cursors of its consumers that
    are past its largest id to that id (in the deleting transaction).

    Only for a table without AUTOINCREMENT (``records``); a no-op on PostgreSQL.
    """
    if _pg(conn):
        return
    largest = select(func.coalesce(func.max(table.c.id), 0)).scalar_subquery()
    conn.execute(
        consumers.update()
        .where(consumers.c.follows == table.name, consumers.c.last_id > largest)
        .values(last_id=largest)
    )
