"""The nodes' queries pick a peer's newest connection by when it connected."""

from __future__ import annotations

import time

from downlink.sources.substrate import queries
from downlink.sources.substrate.tables import node_connections
from downlink.store.database import Store


def _connection(name: str, ip: str, connected_at: float) -> dict[str, object]:
    return {"connection": name, "node": "1", "ip_addr": ip, "audit": False,
            "connected_at": connected_at, "last_seen": connected_at + 1,
            "disconnected_at": connected_at + 2, "messages": 1, "peer_id": "12D3KooWOne"}


def test_the_newest_connection_is_the_last_connected_not_the_last_inserted(
    store: Store,
) -> None:
    # One consumer batch inserts its connections in key order: here the older
    # connection ("b…", connected first) gets the higher id.
    now = time.time()
    with store.write_engine.begin() as conn:
        conn.execute(node_connections.insert(), [_connection("a-newer", "198.51.100.200", now - 10),
                                                 _connection("b-older", "198.51.100.7", now - 60)])
    with store.write_engine.connect() as conn:
        listed = queries.list_nodes(conn, now, 300)
        shown = queries.list_connections(conn, now, 300)
    assert [row["ip_addr"] for row in listed] == ["198.51.100.200"]
    assert [row["ip_addr"] for row in shown] == ["198.51.100.200"]


def test_each_peers_newest_connection_is_read_from_an_index_alone(store: Store) -> None:
    # substrate_0002's index on (peer_id, connected_at) answers the grouping without
    # reading the table's rows (178 ms at 100,000 connections on SQLite before it).
    with store.write_engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            indexes = {name for (name,) in conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'node_connections'")}
            assert "ix_node_connections_peer_id_connected_at" in indexes
            assert "ix_node_connections_peer_id" not in indexes
            return
        sql = str(queries._newest_of_each_peer().compile(
            conn, compile_kwargs={"literal_binds": True}))
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "COVERING INDEX ix_node_connections_peer_id_connected_at" in plan, plan
