"""The action-log insert itself (COPY + one set-based insert on PostgreSQL, one
multi-row insert on SQLite): new keys only, bodies stored as given, refusals raised as
SQLAlchemy's errors so the writer can isolate them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from downlink.sources.fuelstats.sink import insert_action_logs
from downlink.sources.fuelstats.tables import action_logs
from downlink.store.database import Store
from downlink.store.refusals import is_outage


def row(uid: str, ext: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"master_node_uid": uid, "external_id": ext, "body": body,
            "action_type": "http_request", "action_name": "x", "cluster_id": None,
            "ended_status": None, "duration_s": None, "top_level": True,
            "ts_reception": 1.0e9}


BODIES = [
    {"text": "naïve ☃ \u2028", "nul": "a\u0000b", "nested": {"list": [1, 2.5, None, True]}},
    {"huge": 2**70, "negative": -(2**65)},  # past orjson's 64 bits: the standard library
    {},
]


def test_new_keys_inserted_in_order_existing_ones_kept(store: Store) -> None:
    with store.engine.begin() as conn:
        first = insert_action_logs(conn, [row("mn-a", i, b) for i, b in enumerate(BODIES)])
    assert first == {("mn-a", 0), ("mn-a", 1), ("mn-a", 2)}
    with store.engine.begin() as conn:
        # Two stored keys (sent again with other bodies) and two new ones.
        again = insert_action_logs(conn, [row("mn-a", 0, {"other": 1}), row("mn-b", 0, {}),
                                          row("mn-a", 1, {"other": 2}), row("mn-a", 3, {})])
    assert again == {("mn-b", 0), ("mn-a", 3)}
    with store.engine.connect() as conn:
        stored = conn.execute(select(action_logs.c.master_node_uid, action_logs.c.external_id,
                                     action_logs.c.body).order_by(action_logs.c.id)).all()
    assert [(u, e) for u, e, _ in stored] == [
        ("mn-a", 0), ("mn-a", 1), ("mn-a", 2), ("mn-b", 0), ("mn-a", 3)]
    assert [b for _, _, b in stored[:3]] == BODIES  # never overwritten


def test_a_refused_row_raises_a_refusal(store: Store) -> None:
    """Not an outage (the writer then isolates the row); on PostgreSQL as SQLAlchemy's
    class, though COPY raises psycopg's own."""
    with store.engine.begin() as conn:
        insert_action_logs(conn, [row("mn-r", 1, {})])
    with pytest.raises(Exception) as caught, store.engine.begin() as conn:
        insert_action_logs(conn, [row("mn-r", 2, {}), row("mn-r", 2**63, {})])  # not a bigint
    assert not is_outage(caught.value)
    if store.engine.dialect.name == "postgresql":
        assert isinstance(caught.value, DBAPIError)
    with store.engine.connect() as conn:
        stored = conn.execute(select(action_logs.c.external_id)
                              .where(action_logs.c.master_node_uid == "mn-r")).scalars().all()
    assert stored == [1]
