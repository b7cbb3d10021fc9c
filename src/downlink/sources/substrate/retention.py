"""Substrate's retention: expired records (never audit ones) and stale connection rows.

A record expires ``DOWNLINK_SUBSTRATE_RETENTION_HOURS`` after the server received it
(``ts_reception``, the server's clock; the reference purged on the node's clock, so a
node with a wrong clock lost its data at once or kept it forever). Records that came in
on ``/audit`` carry ``attrs.audit = true`` and are never purged. The core's
maintenance task and ``downlink purge`` call :func:`purge` (``Source.purge``) until it
deletes nothing, one short transaction each.

On a partitioned ``records`` (PostgreSQL, ``downlink partition``) a month's partition
that lies wholly before the cut-off and holds only records the purge would delete (no
other source's, no audit record) is dropped whole first
(``downlink.store.partitions``); the rest is purged row by row, at most
``DOWNLINK_SUBSTRATE_PURGE_BATCH`` records a call. Once none is left, the connection
rows and closes not seen since the cut-off go (audit ones stay). Records have no
foreign key to ``node_connections``: deleting records or connection rows cannot make
a pending insert fail.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, false, func, or_, select, true
from sqlalchemy.dialects import postgresql

from downlink.sources.substrate.tables import node_connections, node_disconnects
from downlink.sources.substrate.wire import SOURCE
from downlink.store import follow, partitions
from downlink.store.tables import records

log = logging.getLogger(__name__)

# The analytics store's records expire by the same rule (Source.records_expiry).
CLICKHOUSE_EXPIRY = f"source = '{SOURCE}' AND NOT audit"


def _audit() -> ColumnElement[Any]:
    return func.coalesce(records.c.attrs["audit"].as_boolean(), false())


def expired(cutoff: float) -> ColumnElement[bool]:
    """The records a purge at ``cutoff`` deletes."""
    return and_(records.c.source == SOURCE, records.c.ts_reception < cutoff,
                _audit() == false())


def _kept_sql() -> str:
    """The rows a purge never deletes, as SQL for a partition's check."""
    kept = or_(records.c.source != SOURCE, _audit() == true())
    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(kept.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def drop_record_partitions(conn: Connection, cutoff: float) -> int:
    """Drop the partitions of ``records`` that hold only expired records; rows dropped."""
    if conn.dialect.name != "postgresql":
        return 0
    names, rows = partitions.drop_expired(conn, cutoff, _kept_sql())
    if names:
        log.info("dropped partitions %s (%d expired records)", ", ".join(names), rows)
    return rows


def purge_records_batch(conn: Connection, cutoff: float, limit: int) -> int:
    """Delete up to ``limit`` expired records (oldest ids first); return how many."""
    ids = select(records.c.id).where(expired(cutoff)).order_by(records.c.id).limit(limit)
    result = conn.execute(delete(records).where(records.c.id.in_(ids.scalar_subquery())))
    # SQLite hands out the largest id again once its row is gone: keep the cursors of
    # consumers following ``records`` at or below the largest id left.
    follow.clamp_cursors(conn, records)
    return int(result.rowcount or 0)


def purge_connections(conn: Connection, cutoff: float) -> int:
    """Delete non-audit connection rows (and closes) not seen since ``cutoff``.

    A connection that is still open but silent for the whole retention period loses its
    row too; its next records recreate it. With the default idle timeout such a
    connection is long closed.
    """
    nc, nd = node_connections.c, node_disconnects.c
    rows = conn.execute(
        delete(node_connections).where(nc.audit == false(), nc.last_seen < cutoff)
    ).rowcount
    closes = conn.execute(
        delete(node_disconnects).where(nd.audit == false(), nd.disconnected_at < cutoff)
    ).rowcount
    return int(rows or 0) + int(closes or 0)


def purge(conn: Connection, before_ts: float, limit: int) -> int:
    """``Source.purge``: one short step of the purge; records deleted (0: none left).

    The step that finds fewer than ``limit`` expired records left also deletes the
    stale connection rows and closes (not counted: the purge metric counts records).
    """
    dropped = drop_record_partitions(conn, before_ts)
    if dropped:
        return dropped
    done = purge_records_batch(conn, before_ts, limit)
    if done < limit:
        purge_connections(conn, before_ts)
    return done
