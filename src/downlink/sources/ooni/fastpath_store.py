"""Writing ``ooni_fastpath`` rows: one per measurement_uid, replaced on re-scoring.

Every write keeps the aggregation rollups (``rollup.py``) in the same transaction: a
replaced row's old counts are subtracted before its new ones are added, a deleted
row's are subtracted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from downlink.sources.ooni import rollup
from downlink.sources.ooni.tables import fastpath

_UPDATED = [c.name for c in fastpath.columns if c.name != "measurement_uid"]


def upsert(conn: Connection, rows: Sequence[dict[str, Any]], ts_reception: Sequence[float]) -> None:
    """Insert rows, replacing any with the same measurement_uid (newest wins)."""
    if not rows:
        return
    now = time.time()
    by_uid = {
        row["measurement_uid"]: {**row, "update_time": now, "ts_reception": ts}
        for row, ts in zip(rows, ts_reception, strict=True)
    }
    values = list(by_uid.values())
    delta: rollup.Delta = {}
    rollup.add_rows(delta, rollup.existing(conn, [r["measurement_uid"] for r in values]), -1)
    rollup.add_rows(delta, values, 1)
    # One cached statement executed for many rows (SQLAlchemy batches them into
    # multi-row INSERTs itself) instead of compiling a new statement per chunk.
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(fastpath)
    stmt = stmt.on_conflict_do_update(
        index_elements=[fastpath.c.measurement_uid],
        set_={name: stmt.excluded[name] for name in _UPDATED},
    )
    conn.execute(stmt, values)
    rollup.apply(conn, delta)


def delete_received(
    conn: Connection, since: float, until: float, *where: ColumnElement[bool]
) -> int:
    """Delete the rows of measurements received in ``[since, until)`` (matching
    ``where``)."""
    received = (fastpath.c.ts_reception >= since, fastpath.c.ts_reception < until, *where)
    rollup.subtract_where(conn, *received)
    result = conn.execute(fastpath.delete().where(*received))
    return result.rowcount


def delete_uids(conn: Connection, uids: Sequence[str]) -> None:
    """Delete these measurements' rows."""
    for start in range(0, len(uids), 500):
        part = fastpath.c.measurement_uid.in_(uids[start : start + 500])
        rollup.subtract_where(conn, part)
        conn.execute(fastpath.delete().where(part))
