"""Insert a batch of records in one statement, skipping retransmissions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select

from downlink.store import sqlite_insert
from downlink.store.pg_insert import insert_returning_ids
from downlink.store.tables import records

Row = dict[str, Any]

# Columns a row must carry to be inserted; anything else in the dict is ignored.
RECORD_COLUMNS = tuple(c.name for c in records.columns if c.name != "id")
_KEY_CHUNK = 500
# The table's declared columns (on PostgreSQL it also has ``txid``, see store/follow.py).
# On a partitioned ``records`` (store/partitions.py) ``dedup_key`` cannot be unique: the
# lookup first takes a transaction advisory lock per key, in sorted order, so a
# retransmission reaching two worker processes at once is stored once. The locks are
# taken only when the table is partitioned, in the same statement (no round trip).
_BY_KEYS_PG = (
    "WITH l AS MATERIALIZED (SELECT count(*) AS n FROM ("
    "SELECT pg_advisory_xact_lock(h) FROM unnest(CAST(%s AS BIGINT[])) AS h "
    "WHERE EXISTS (SELECT 1 FROM pg_partitioned_table "
    "WHERE partrelid = CAST('records' AS regclass))) AS s) "
    f"SELECT r.* FROM l CROSS JOIN LATERAL (SELECT {', '.join(c.name for c in records.columns)} "
    "FROM records WHERE dedup_key = ANY(CAST(%s AS VARCHAR(64)[])) AND l.n >= 0) AS r"
)


def _lock_ids(keys: list[str]) -> list[int]:
    """One signed 64-bit advisory lock id per distinct key, in sorted order."""
    ids = {
        int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big", signed=True)
        for k in keys
    }
    return sorted(ids)


class _Processor(Protocol):
    def __call__(self, conn: Connection, rows: list[Row]) -> None: ...


def _stored_by_key(conn: Connection, keys: list[str]) -> dict[str, Row]:
    found: dict[str, Row] = {}
    if conn.dialect.name == "postgresql":
        # One array parameter: a short statement, the same for every batch, instead of
        # 500 placeholders per chunk rewritten on every batch.
        result = conn.exec_driver_sql(_BY_KEYS_PG, (_lock_ids(keys), keys))
        for row in result.mappings():
            found[row["dedup_key"]] = dict(row)
        return found
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        result = conn.execute(select(records).where(records.c.dedup_key.in_(chunk)))
        for row in result.mappings():
            found[row["dedup_key"]] = dict(row)
    return found


def insert_records(
    conn: Connection, rows: list[Row], processors: Sequence[_Processor] = ()
) -> list[Row]:
    """Insert ``rows`` and return each as stored, in the same order.

    Rows whose ``dedup_key`` is already in the table (or earlier in the same batch)
    are not inserted; the stored row is returned for them with ``duplicate=True``.
    ``processors`` see only the rows that are really new, before they are inserted,
    and may fill in columns (a crash's guilty frame) or update rollups.
    """
    keys = [r["dedup_key"] for r in rows if r.get("dedup_key")]
    stored = _stored_by_key(conn, keys) if keys else {}
    new_index: list[int] = []
    first_in_batch: dict[str, int] = {}
    alias: dict[int, int] = {}
    for i, row in enumerate(rows):
        key = row.get("dedup_key")
        if key and key in stored:
            continue
        if key and key in first_in_batch:
            alias[i] = first_in_batch[key]
            continue
        if key:
            first_in_batch[key] = i
        new_index.append(i)

    fresh = [rows[i] for i in new_index]
    for process in processors:
        process(conn, fresh)
    params = [{c: row.get(c) for c in RECORD_COLUMNS} for row in fresh]
    ids: list[int] = []
    if params and conn.dialect.name == "postgresql":
        # COPY with ids taken from the sequence first (see pg_insert).
        ids = insert_returning_ids(conn, RECORD_COLUMNS, params)
    elif params and conn.dialect.name == "sqlite":
        # One multi-row INSERT per chunk instead of one per row (see sqlite_insert).
        ids = sqlite_insert.insert_returning_ids(conn, RECORD_COLUMNS, params)
    elif params:
        stmt = insert(records).returning(records.c.id, sort_by_parameter_order=True)
        ids = list(conn.execute(stmt, params).scalars())

    out: list[Row | None] = [None] * len(rows)
    for i, new_id in zip(new_index, ids, strict=True):
        out[i] = {**rows[i], "id": new_id, "duplicate": False}
    for i, row in enumerate(rows):
        key = row.get("dedup_key")
        if out[i] is not None:
            continue
        if i in alias:
            out[i] = {**(out[alias[i]] or {}), "duplicate": True}
        elif key and key in stored:
            out[i] = {**stored[key], "duplicate": True}
    return [r for r in out if r is not None]
