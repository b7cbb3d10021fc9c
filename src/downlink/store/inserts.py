"""Insert a batch of records in one statement, skipping retransmissions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import orjson
import psycopg
from sqlalchemy import JSON, Boolean, Connection, insert
from sqlalchemy.exc import DBAPIError

from downlink.store import sqlite_insert
from downlink.store.pg_insert import insert_returning_ids
from downlink.store.tables import records

Row = dict[str, Any]

# Columns a row must carry to be inserted; anything else in the dict is ignored.
RECORD_COLUMNS = tuple(c.name for c in records.columns if c.name != "id")
_EVERY_COLUMN: Row = dict.fromkeys(RECORD_COLUMNS)
_KEY_CHUNK = 500
_COLUMNS = ", ".join(c.name for c in records.columns)
# The table's declared columns (on PostgreSQL it also has ``txid``, see store/follow.py).
# On a partitioned ``records`` (store/partitions.py) ``dedup_key`` cannot be unique: the
# lookup first takes a transaction advisory lock per key, in sorted order, so a
# retransmission reaching two worker processes at once is stored once. The locks are
# taken only when the table is partitioned, in the same statement (no round trip).
# The keys travel as one JSON text: psycopg dumps a list parameter element by element
# in Python (about 2 us a key, most of this statement's client cost), a string in C.
_BY_KEYS_PG = (
    "WITH k AS MATERIALIZED (SELECT json_array_elements_text(CAST(%s AS json)) AS key), "
    "l AS MATERIALIZED (SELECT count(*) AS n FROM ("
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(key, 0) AS h "
    "FROM k ORDER BY h) AS o "
    "WHERE EXISTS (SELECT 1 FROM pg_partitioned_table "
    "WHERE partrelid = CAST('records' AS regclass))) AS s) "
    f"SELECT r.* FROM l CROSS JOIN LATERAL (SELECT {_COLUMNS} "
    "FROM records WHERE dedup_key = ANY(ARRAY(SELECT key FROM k)) AND l.n >= 0) AS r"
)


@lru_cache(maxsize=16)
def _by_keys_sqlite(count: int) -> str:
    marks = ", ".join("?" * count)
    return f"SELECT {_COLUMNS} FROM records WHERE dedup_key IN ({marks})"


class _Processor(Protocol):
    def __call__(self, conn: Connection, rows: list[Row]) -> None: ...


def _stored_by_key(conn: Connection, keys: list[str]) -> dict[str, Row]:
    """The stored records of ``keys`` (a raw DB-API query: no SQLAlchemy compiling or
    result processing per batch), by key."""
    raw = conn.connection.driver_connection
    assert raw is not None, "a live database connection"
    found: dict[str, Row] = {}
    raw_pg = conn.dialect.name == "postgresql"
    parts: list[tuple[str, tuple[str, ...]]]
    if raw_pg:
        parts = [(_BY_KEYS_PG, (orjson.dumps(keys).decode(),))]
    else:
        parts = [
            (_by_keys_sqlite(len(chunk)), tuple(chunk))
            for chunk in (keys[i : i + _KEY_CHUNK] for i in range(0, len(keys), _KEY_CHUNK))
        ]
    for statement, params in parts:
        try:
            cur = raw.execute(statement, params)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        except (psycopg.Error, sqlite3.Error) as exc:
            # As SQLAlchemy's classes, which the writer tells outages from refusals by.
            raise DBAPIError.instance(statement, None, exc, type(exc)) from exc
        for values in rows:
            row = dict(zip(names, values, strict=True))
            found[row["dedup_key"]] = row if raw_pg else _from_sqlite(row)
    return found


_JSON_COLUMNS = tuple(c.name for c in records.columns if isinstance(c.type, JSON))
_BOOL_COLUMNS = tuple(c.name for c in records.columns if isinstance(c.type, Boolean))


def _from_sqlite(row: Row) -> Row:
    """A row read through sqlite3 as SQLAlchemy would return it: JSON decoded, 0/1 as
    booleans (psycopg does both itself)."""
    for name in _JSON_COLUMNS:
        value = row.get(name)
        if isinstance(value, str | bytes):
            row[name] = orjson.loads(value)
    for name in _BOOL_COLUMNS:
        value = row.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            row[name] = bool(value)
    return row


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
    # Every column present (None where a row has none; extra keys are left unread).
    params = [{**_EVERY_COLUMN, **row} for row in fresh]
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
