"""substrate_0001 on a database the writer's processor kept: closes copied, nothing recounted."""

from __future__ import annotations

import json
import time

from sqlalchemy import create_engine, insert, select

from downlink.settings import Settings
from downlink.sources.substrate.connections import NAME
from downlink.sources.substrate.tables import node_connections, node_disconnects
from downlink.sources.substrate.wire import NodeMessage, parse_frame, to_row
from downlink.store import cursors, migrate
from downlink.store.database import Store
from downlink.store.tables import records
from downlink.testing.consumers import catch_up


def test_upgrade_keeps_the_counted_connections_and_their_closes(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    now = time.time()
    message = parse_frame(json.dumps({"id": 1, "ts": "2021-06-23T10:15:30Z",
                                      "payload": {"msg": "system.interval"}}))
    assert isinstance(message, NodeMessage)
    try:
        for head in ("0017_dashboard_speed", "0002_substrate", "0004_classification_id"):
            migrate.upgrade(engine, head)  # the core's heads before this revision
        with engine.begin() as conn:
            for connection, closed in (("a" * 32, now - 5), ("b" * 32, None)):
                rows = [to_row(message, connection=connection, seq=seq, peer_id="P", ip="x",
                               audit=connection == "b" * 32, received_at=now - 60)
                        for seq in range(3)]
                for row in rows:
                    del row["attrs"]["since"]  # as the writer of that version stored them
                conn.execute(insert(records), rows)
                conn.execute(insert(node_connections).values(
                    connection=connection, node="1", ip_addr="x", audit=connection == "b" * 32,
                    connected_at=now - 61, last_seen=now - 60, disconnected_at=closed,
                    messages=3, peer_id="P"))
            last = conn.execute(select(records.c.id).order_by(records.c.id.desc())).first()
        migrate.upgrade(engine)
        with engine.connect() as conn:
            closes = [tuple(r) for r in conn.execute(select(node_disconnects))]
            cursor = cursors.read(conn, NAME)
        assert closes == [("a" * 32, False, now - 5)]
        assert last is not None and cursor is not None and cursor.id == last[0]
    finally:
        engine.dispose()
    store = Store(Settings(database_url=empty_db_url))
    try:
        catch_up(store)  # the records counted before: not counted again
        counted = store.run(lambda c: sorted(
            (r.connection, r.messages) for r in c.execute(select(node_connections))))
    finally:
        store.close()
    assert counted == [("a" * 32, 3), ("b" * 32, 3)]
