"""``node_connections``, kept after the ack by the ``substrate_connections`` consumer.

The consumer follows ``records`` in commit order (``downlink.pipeline.consumers``)
and upserts one ``node_connections`` row per (connection, node) of each batch's
substrate records, in the transaction that moves its cursor: each record is counted
once, whatever process commits it or dies.

Everything a row holds comes from the records alone (``wire.to_row`` keeps it in
``attrs``) or from ``node_disconnects``, so ``downlink reprocess --source substrate``
rebuilds it identically. The fold is order-free, so a replay of a range gives the row
that applying every record once in any order gives:

* ``messages`` is a count, ``last_seen`` a maximum, ``connected_at`` a minimum of the
  ``since`` every record of the connection carries (one value; older records without
  it count their own reception time);
* ``ip_addr`` and ``audit`` are the connection's, the same on each of its records;
* ``peer_id`` is the ``machine_id`` of its records not flagged by the sender check: a
  connection names one peer id per node, the first it learnt;
* the descriptive fields (name, chain, version, …) come from the one record marked
  ``announced`` (its ``system.connected``, re-read from the stored payload), unless
  that record was flagged;
* ``disconnected_at`` comes from ``node_disconnects``, written when the connection
  closes. That close and the consumer's upsert take the same lock on PostgreSQL, so
  whichever commits second sees the other's row (SQLite has one writer anyway).

``reset`` (before a reprocess of ``[since, until)``) rebuilds the rows of the
connections with records in the range from the records outside it that the
consumer had applied; the replay then adds the range's records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, and_, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from downlink.sources.base import Consumer, LogRecord
from downlink.sources.substrate.tables import node_connections, node_disconnects
from downlink.sources.substrate.wire import SOURCE, identity_of
from downlink.store import cursors, follow
from downlink.store.tables import records

NAME = "substrate_connections"
Row = dict[str, Any]
Key = tuple[str, str]

# Descriptive fields of a connection's announcing ``system.connected``.
_DESCRIPTIVE = (
    "name",
    "chain",
    "version",
    "implementation",
    "genesis_hash",
    "authority",
    "startup_time",
    "info",
)
# One PostgreSQL advisory lock shared by the consumer's upserts and the disconnects.
_LOCK = "SELECT pg_advisory_xact_lock(7460321, 1)"
_CHUNK = 500  # connection ids per IN list


def _attrs(row: Mapping[str, Any]) -> Mapping[str, Any]:
    attrs = row.get("attrs")
    return attrs if isinstance(attrs, Mapping) else {}


def _announced_fields(row: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row | None:
    """The descriptive fields ``row`` announces (None when it announces none)."""
    if row.get("sender_flagged"):
        return None
    if "since" in attrs:
        if not attrs.get("announced"):
            return None
    elif attrs.get("msg") != "system.connected":  # stored before records carried it
        return None
    try:
        body = orjson.loads(row.get("payload") or "")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    found = identity_of(str(attrs.get("msg")), body)
    if found is None or not found.announced:
        return None
    columns = found.columns()
    return {k: columns[k] for k in _DESCRIPTIVE}


def fold(rows: Iterable[Mapping[str, Any]]) -> dict[Key, Row]:
    """Aggregate substrate records into connection rows (in any order: same result)."""
    by_key: dict[Key, Row] = {}
    for row in rows:
        if row.get("source") != SOURCE:
            continue
        attrs = _attrs(row)
        connection, node = attrs.get("conn"), attrs.get("node")
        if not isinstance(connection, str) or not isinstance(node, str):
            continue
        ts = float(row["ts_reception"])
        since = attrs.get("since")
        since = float(since) if isinstance(since, int | float) else ts
        key = (connection, node)
        entry = by_key.get(key)
        if entry is None:
            entry = by_key[key] = {
                "connection": connection,
                "node": node,
                "ip_addr": str(attrs.get("ip") or ""),
                "audit": bool(attrs.get("audit")),
                "connected_at": since,
                "last_seen": ts,
                "messages": 0,
                "peer_id": None,
                **dict.fromkeys(_DESCRIPTIVE),
            }
        entry["messages"] += 1
        entry["last_seen"] = max(entry["last_seen"], ts)
        entry["connected_at"] = min(entry["connected_at"], since)
        if not row.get("sender_flagged") and row.get("machine_id"):
            entry["peer_id"] = entry["peer_id"] or row["machine_id"]
        fields = _announced_fields(row, attrs)
        if fields is not None:
            for column, value in fields.items():
                if value is not None:
                    entry[column] = value
    return by_key


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text(_LOCK))


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _disconnects(conn: Connection, connections: Iterable[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    nd = node_disconnects.c
    for part in _chunks(sorted(set(connections))):
        stmt = select(nd.connection, nd.disconnected_at).where(nd.connection.in_(part))
        found.update({str(c): float(at) for c, at in conn.execute(stmt)})
    return found


def upsert(conn: Connection, rows: Mapping[Key, Row]) -> None:
    """Add folded rows to ``node_connections`` (the same fold, in SQL)."""
    if not rows:
        return
    _lock(conn)
    closed = _disconnects(conn, (c for c, _ in rows))
    # In key order: two writers of the same rows take their locks in one order.
    params = [{**rows[k], "disconnected_at": closed.get(k[0])} for k in sorted(rows)]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(node_connections)
    current = node_connections.c
    new = stmt.excluded
    values: dict[str, Any] = {
        "messages": current.messages + new.messages,
        "last_seen": case(
            (new.last_seen > current.last_seen, new.last_seen), else_=current.last_seen
        ),
        "connected_at": case(
            (new.connected_at < current.connected_at, new.connected_at),
            else_=current.connected_at,
        ),
        "peer_id": func.coalesce(current.peer_id, new.peer_id),
        "disconnected_at": func.coalesce(current.disconnected_at, new.disconnected_at),
    }
    for column in _DESCRIPTIVE:
        values[column] = func.coalesce(new[column], current[column])
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["connection", "node"], set_=values),
        params,
    )


def handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
    """The consumer's step: the batch's substrate records into their connection rows."""
    upsert(conn, fold(r.row for r in batch))


_COLUMNS = (
    records.c.id,
    records.c.source,
    records.c.ts_reception,
    records.c.machine_id,
    records.c.sender_flagged,
    records.c.attrs,
)


def reset(conn: Connection, since: float, until: float) -> None:
    """Forget what the consumer derived from records received in ``[since, until)``.

    The rows of the connections with such records are rebuilt from their other records
    the consumer had applied (before ``since`` or from ``until`` on); the replay of the
    range adds the rest.
    """
    cursor = cursors.read(conn, NAME) or follow.START
    handled = and_(records.c.source == SOURCE, follow.up_to(conn, records, cursor))
    ts = records.c.ts_reception
    conn_id = records.c.attrs["conn"].as_string()
    touched = sorted(
        str(c)
        for c in conn.execute(
            select(conn_id).where(handled, ts >= since, ts < until).distinct()
        ).scalars()
        if c is not None
    )
    if not touched:
        return
    _lock(conn)
    for part in _chunks(touched):
        conn.execute(delete(node_connections).where(node_connections.c.connection.in_(part)))
    wanted = set(touched)
    outside = select(*_COLUMNS).where(handled, or_(ts < since, ts >= until))
    kept: list[Row] = []
    for found in conn.execute(outside).mappings():
        row = dict(found)
        if str(_attrs(row).get("conn")) in wanted:
            kept.append(row)
    announced = [r["id"] for r in kept
                 if _attrs(r).get("announced") or _attrs(r).get("msg") == "system.connected"]
    payloads: dict[int, str] = {}
    for start in range(0, len(announced), _CHUNK):
        ids = announced[start : start + _CHUNK]
        stmt = select(records.c.id, records.c.payload).where(records.c.id.in_(ids))
        payloads.update({int(i): str(p) for i, p in conn.execute(stmt)})
    for row in kept:
        row["payload"] = payloads.get(int(row["id"]), "")
    upsert(conn, fold(kept))


CONSUMER = Consumer(name=NAME, follows="records", handle=handle, reset=reset)


def mark_disconnected(conn: Connection, connection: str, audit: bool, when: float) -> int:
    """Record that a websocket connection closed; return the connection rows updated.

    ``node_disconnects`` keeps it for the consumer (its rows may not exist yet: they
    follow the records after the ack) and for reprocessing.
    """
    _lock(conn)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(node_disconnects)
        .values(connection=connection, audit=audit, disconnected_at=when)
        .on_conflict_do_nothing(index_elements=["connection"])
    )
    result = conn.execute(
        update(node_connections)
        .where(node_connections.c.connection == connection)
        .values(disconnected_at=when)
    )
    return int(result.rowcount or 0)
