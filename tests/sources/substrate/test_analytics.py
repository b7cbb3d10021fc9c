"""Substrate's message counts on ClickHouse leave out what the SQL purge has deleted."""

from __future__ import annotations

import time

from downlink.analytics import records, schema
from downlink.analytics.client import connect
from downlink.sources.substrate.analytics import message_types


def test_rows_past_retention_are_left_out(analytics_url: str) -> None:
    ch = connect(analytics_url)
    schema.apply(ch, [schema.Planned(records.TABLE, None)])
    now = time.time()
    names = [c for c, _ in records.COLUMNS]
    base = {c: "" for c in names} | {
        "source": "substrate", "record_version": 0, "severity": 0, "payload_version": 0,
        "external": False, "attrs": None, "guilty_id": None, "shipped_at": now,
        "sender_flagged": None, "machine_id": "peer", "ts_capture": now,
    }
    rows = [
        {"id": 1, "classification": "substrate/a", "ts_reception": now - 60, "audit": False},
        {"id": 2, "classification": "substrate/a", "ts_reception": now - 7200, "audit": False},
        {"id": 3, "classification": "substrate/b", "ts_reception": now - 7200, "audit": True},
        {"id": 4, "classification": "substrate/b", "ts_reception": now - 30, "audit": False,
         "sender_flagged": True},
    ]
    ch.insert("records", [[{**base, **r}[c] for c in names] for r in rows], names)
    counts = {m["msg"]: m["count"] for m in message_types(ch, now - 86400)}
    assert counts == {"a": 2, "b": 1}  # all kept; the flagged one never counted
    counts = {m["msg"]: m["count"] for m in message_types(ch, now - 86400, kept_hours=1)}
    assert counts == {"a": 1, "b": 1}  # past an hour: gone, except the audit record
