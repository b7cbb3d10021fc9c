"""The ``consumers`` table: each consumer's cursor, counts and last failure.

:func:`lock` takes a consumer's row for the transaction that handles its next batch:
on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``, so when several processes run the
same consumer one handles the batch and the others find the row taken and move on;
on SQLite the writer's ``BEGIN IMMEDIATE`` already serialises them. :func:`advance`
moves the cursor in that same transaction, so a batch is applied exactly once.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from downlink.store.follow import Cursor, last
from downlink.store.tables import consumers

ERROR_MAX = 2000


def ensure(conn: Connection, name: str, follows: str) -> None:
    """Create the consumer's row (cursor at the start) unless it exists."""
    values = {"name": name, "follows": follows, "txid": 0, "last_id": 0, "handled": 0,
              "failures": 0}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(consumers).values(**values).on_conflict_do_nothing())


def lock(conn: Connection, name: str, *, wait: bool = False) -> Cursor | None:
    """Take the consumer's row for this transaction; None when another process has it
    (or, with ``wait``, once it is free) or when the consumer has no row."""
    stmt = select(consumers.c.txid, consumers.c.last_id).where(consumers.c.name == name)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=not wait)
    found = conn.execute(stmt).first()
    return None if found is None else Cursor(int(found[0]), int(found[1]))


def read(conn: Connection, name: str) -> Cursor | None:
    """The consumer's cursor, without locking (None if it has no row yet)."""
    found = conn.execute(
        select(consumers.c.txid, consumers.c.last_id).where(consumers.c.name == name)
    ).first()
    return None if found is None else Cursor(int(found[0]), int(found[1]))


def advance(
    conn: Connection,
    name: str,
    cursor: Cursor,
    handled: int,
    last_ts: float | None,
    *,
    now: float | None = None,
) -> None:
    """Move the cursor past a handled batch and clear any failure."""
    values: dict[str, Any] = {
        "txid": cursor.txid,
        "last_id": cursor.id,
        "handled": consumers.c.handled + handled,
        "updated_at": time.time() if now is None else now,
        "error": None,
        "failures": 0,
        "retry_at": None,
    }
    if last_ts is not None:
        values["last_ts"] = last_ts
    conn.execute(update(consumers).where(consumers.c.name == name).values(**values))


def set_cursor(conn: Connection, name: str, cursor: Cursor) -> None:
    """Put the cursor at ``cursor`` (a consumer that starts at the end of its table)."""
    conn.execute(
        update(consumers)
        .where(consumers.c.name == name)
        .values(txid=cursor.txid, last_id=cursor.id)
    )


def fail(conn: Connection, name: str, message: str, retry_max: float, *,
         now: float | None = None) -> tuple[int, float]:
    """Record a failed batch; return the failures in a row and when to retry.

    The wait doubles with each failure in a row, from 0.5 s up to ``retry_max``.
    """
    at = time.time() if now is None else now
    failures = conn.execute(
        select(consumers.c.failures).where(consumers.c.name == name)
    ).scalar_one() + 1
    retry_at = at + min(retry_max, 0.5 * 2 ** min(failures - 1, 30))
    conn.execute(
        update(consumers)
        .where(consumers.c.name == name)
        .values(error=message[:ERROR_MAX], failures=failures, retry_at=retry_at, updated_at=at)
    )
    return int(failures), retry_at


def rows(conn: Connection) -> dict[str, dict[str, Any]]:
    """Every consumer's row by name."""
    return {r["name"]: dict(r) for r in conn.execute(select(consumers)).mappings()}


def skip_to_end(conn: Connection, name: str, table: Table) -> Cursor:
    """Put the consumer's cursor after the last committed row of ``table`` (creating its
    row): for rows whose derived data was written with them (a bulk loader's)."""
    ensure(conn, name, table.name)
    end = last(conn, table)
    set_cursor(conn, name, end)
    return end
