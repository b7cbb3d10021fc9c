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

from downlink.store import partition_keys, sqlite_insert
from downlink.store.pg_insert import insert_returning_ids
from downlink.store.tables import records

Row = dict[str, Any]

# Columns a row must carry to be inserted; anything else in the dict is ignored.
RECORD_COLUMNS = tuple(c.name for c in records.columns if c.name != "id")
_EVERY_COLUMN: Row = dict.fromkeys(RECORD_COLUMNS)
_KEY_CHUNK = 500
_COLUMNS = ", ".join(c.name for c in records.columns)
# The table's declared columns (on PostgreSQL it also has ``txid``, see store/follow.py).
# On an unpartitioned ``records`` the unique ``dedup_key`` keeps retransmissions out;
# the lookup also says, in the same statement (no round trip), whether the table has
# become partitioned (store/partitions.py): a marker row, ``_parted`` true, then takes
# the connection to the claims of store/partition_keys.py. The lookup and the insert
# after it hold a lock on the table they saw, so the conversion's swap never falls
# between them. ``to_regclass`` names the table when the statement runs, after its
# lock was granted: a ``'records'::regclass`` literal is resolved when the statement
# is parsed, before a lookup waiting on the swap's lock, and named the old table then
# (a batch waiting through the swap skipped its claims; caught by
# tests/store/test_partitions.py).
# The keys travel as one JSON text: psycopg dumps a list parameter element by element
# in Python (about 2 us a key, most of this statement's client cost), a string in C.
_KEYS_PG = "ARRAY(SELECT json_array_elements_text(CAST(%s AS json)))"
_NULLS = ", ".join(f"NULL AS {c.name}" for c in records.columns)
_BY_KEYS_PG = (
    "WITH p AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
    "WHERE partrelid = to_regclass('records')) AS parted) "
    f"SELECT {_COLUMNS}, false AS _parted FROM records "
    f"WHERE dedup_key = ANY({_KEYS_PG}) AND NOT (SELECT parted FROM p) "
    f"UNION ALL SELECT {_NULLS}, true FROM p WHERE parted"
)
_STORED_PG = f"SELECT {_COLUMNS} FROM records WHERE dedup_key = ANY({_KEYS_PG})"
_PARTED = "downlink.records_partitioned"  # Connection.info: this connection saw it


@lru_cache(maxsize=16)
def _by_keys_sqlite(count: int) -> str:
    marks = ", ".join("?" * count)
    return f"SELECT {_COLUMNS} FROM records WHERE dedup_key IN ({marks})"


class _Processor(Protocol):
    def __call__(self, conn: Connection, rows: list[Row]) -> None: ...


def _run(raw: Any, statement: str, params: tuple[Any, ...]) -> tuple[list[str], list[Any]]:
    try:
        cur = raw.execute(statement, params)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall() if names else []
    except (psycopg.Error, sqlite3.Error) as exc:
        # As SQLAlchemy's classes, which the writer tells outages from refusals by.
        raise DBAPIError.instance(statement, None, exc, type(exc)) from exc


def _by_key(names: list[str], found: list[Any]) -> dict[str, Row]:
    out: dict[str, Row] = {}
    for values in found:
        row = dict(zip(names, values, strict=True))
        row.pop("_parted", None)  # the partitioned check's column (_BY_KEYS_PG)
        out[row["dedup_key"]] = row
    return out


def _stored_by_key(conn: Connection, rows: list[Row]) -> dict[str, Row]:
    """The stored records of the ``dedup_key`` of ``rows`` (raw DB-API queries: no
    SQLAlchemy compiling or result processing per batch), by key. On a partitioned
    ``records`` the keys not stored are claimed for this transaction."""
    keys = [r["dedup_key"] for r in rows if r.get("dedup_key")]
    if not keys:
        return {}
    raw = conn.connection.driver_connection
    assert raw is not None, "a live database connection"
    if conn.dialect.name != "postgresql":
        found: dict[str, Row] = {}
        for i in range(0, len(keys), _KEY_CHUNK):
            chunk = tuple(keys[i : i + _KEY_CHUNK])
            names, values = _run(raw, _by_keys_sqlite(len(chunk)), chunk)
            for row in values:
                one = _from_sqlite(dict(zip(names, row, strict=True)))
                found[one["dedup_key"]] = one
        return found
    if not conn.info.get(_PARTED):
        names, values = _run(raw, _BY_KEYS_PG, (orjson.dumps(keys).decode(),))
        if not any(v[-1] for v in values):
            return _by_key(names, values)
        conn.info[_PARTED] = True  # a table once partitioned stays partitioned
    return _claim(raw, rows)


def _claim(raw: Any, rows: list[Row]) -> dict[str, Row]:
    """Claim the keys of ``rows`` in ``records_keys``; the stored records of the keys
    already taken (store/partition_keys.py)."""
    first: dict[str, Any] = {}
    for row in rows:
        key = row.get("dedup_key")
        if key and key not in first:
            first[key] = row.get("ts_reception")
    _, claimed = _run(raw, partition_keys.CLAIM, (orjson.dumps(list(first.items())).decode(),))
    taken = first.keys() - {c[0] for c in claimed}
    if not taken:
        return {}
    names, values = _run(raw, _STORED_PG, (orjson.dumps(sorted(taken)).decode(),))
    stored = _by_key(names, values)
    gone = [(key, first[key]) for key in sorted(taken) if key not in stored]
    if gone:
        _run(raw, partition_keys.RETAKE, (orjson.dumps(gone).decode(),))
    return stored


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
    stored = _stored_by_key(conn, rows)
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
