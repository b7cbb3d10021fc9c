"""The fastpath as a post-ack consumer of the measurement log.

It follows ``ooni_measurements`` in id order and writes one ``ooni_fastpath`` row per
measurement, in the same transaction as the consumer's cursor (the core's job), so a
measurement is scored exactly once per pass; re-scoring replaces rows by
measurement_uid, so a replay of any range leaves identical rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from downlink.sources.base import Consumer, LogRecord
from downlink.sources.ooni import fastpath, fastpath_store, fingerprint_store


def score_batch(conn: Connection, batch: Sequence[LogRecord]) -> int:
    """Score a batch of log records and upsert their rows; returns how many were written."""
    fps = fingerprint_store.current(conn)
    rows = []
    received = []
    for record in batch:
        row = fastpath.build_row(
            bytes(record.row["body"]),
            record.row["measurement_uid"],
            record.row["report_id"],
            fps,
        )
        if row is not None:
            rows.append(row)
            received.append(record.ts)
    fastpath_store.upsert(conn, rows, received)
    return len(rows)


def _handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
    score_batch(conn, batch)


def _reset(conn: Connection, since: float, until: float) -> None:
    fastpath_store.delete_received(conn, since, until)


FASTPATH = Consumer(
    name="ooni_fastpath",
    follows="ooni_measurements",
    handle=_handle,
    reset=_reset,
    batch_max=500,
)
