"""Keep ``node_connections`` up to date from inside the writer's transaction.

:func:`record_connections` is a writer processor: it sees each batch of new records
before they are inserted and upserts one ``node_connections`` row per (connection,
node) in the batch. Because the upsert runs in the same transaction as the insert, a
record is never committed without its connection row, and a connection row removed by
the purge is simply recreated by the next batch that needs it (there is no foreign key
that could fail, unlike the reference implementation's lost batches).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, update
from sqlalchemy.dialects import postgresql, sqlite

from downlink.store.sinks import NODE_KEY
from downlink.store.tables import node_connections

Row = dict[str, Any]

# The records sink hands each envelope's ``node`` (the connection details the websocket
# endpoint puts there) to the processors under NODE_KEY; it is not a records column.
_IDENTITY = (
    "peer_id",
    "name",
    "chain",
    "version",
    "implementation",
    "genesis_hash",
    "authority",
    "startup_time",
    "info",
)


def _aggregate(rows: list[Row]) -> list[Row]:
    by_key: dict[tuple[str, str], Row] = {}
    for row in rows:
        node = row.get(NODE_KEY)
        if node is None:
            continue
        key = (node["connection"], node["node"])
        entry = by_key.get(key)
        if entry is None:
            entry = {
                "connection": node["connection"],
                "node": node["node"],
                "ip_addr": node["ip"],
                "audit": node["audit"],
                "connected_at": node["connected_at"],
                "last_seen": row["ts_reception"],
                "messages": 0,
                **dict.fromkeys(_IDENTITY),
            }
            by_key[key] = entry
        entry["messages"] += 1
        entry["last_seen"] = max(entry["last_seen"], row["ts_reception"])
        for column, value in (node.get("identity") or {}).items():
            if value is not None:
                entry[column] = value
    return list(by_key.values())


def record_connections(conn: Connection, rows: list[Row]) -> None:
    """Upsert the ``node_connections`` rows of a batch of new substrate records."""
    params = _aggregate(rows)
    if not params:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(node_connections)
    current = node_connections.c
    new = stmt.excluded
    values: dict[str, Any] = {
        "last_seen": new.last_seen,
        "messages": current.messages + new.messages,
    }
    for column in _IDENTITY:
        # The first peer id a connection announced stays; descriptive fields follow the
        # latest system.connected.
        if column == "peer_id":
            values[column] = func.coalesce(current.peer_id, new.peer_id)
        else:
            values[column] = func.coalesce(new[column], current[column])
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["connection", "node"], set_=values),
        params,
    )


def mark_disconnected(conn: Connection, connection: str, when: float) -> int:
    """Record that a websocket connection closed; return the rows updated."""
    result = conn.execute(
        update(node_connections)
        .where(node_connections.c.connection == connection)
        .values(disconnected_at=when)
    )
    return int(result.rowcount or 0)
