"""Fast multi-row INSERT of records on SQLite: one ``executemany``, ids by arithmetic.

SQLAlchemy cannot promise the order of ``RETURNING`` rows on SQLite, so an
``insert().returning(..., sort_by_parameter_order=True)`` runs one INSERT per record;
a multi-row ``INSERT ... VALUES (...), (...) RETURNING id`` built value by value was
the next profile's cost (about 10 us per record, bench/ingest_cpu.py). Here the rows
are tuples taken with ``itemgetter`` and go in by ``executemany`` (5-6 us). The writer
holds the write lock (``BEGIN IMMEDIATE``) and ``records`` has a plain integer primary
key that no row gives itself, so SQLite hands out the consecutive rowids after the
largest one in input order: the ids are the ``len(rows)`` values ending at
``last_insert_rowid()``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Connection
from sqlalchemy.exc import DBAPIError

from downlink.store.tables import records


@lru_cache(maxsize=16)
def _one_row(columns: tuple[str, ...]) -> str:
    return f"INSERT INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def insert_returning_ids(
    conn: Connection, columns: Sequence[str], params: list[dict[str, Any]]
) -> list[int]:
    """Insert ``params`` (dicts over ``columns``) and return their ids in input order."""
    cols = tuple(columns)
    json_at = [i for i, name in enumerate(cols) if isinstance(records.c[name].type, JSON)]
    get = itemgetter(*cols)
    rows: list[Any] = []
    for p in params:
        values = get(p)
        if json_at:
            values = list(values)
            for i in json_at:
                if values[i] is not None:
                    values[i] = orjson.dumps(values[i]).decode()
        rows.append(values)
    raw = conn.connection.driver_connection
    assert raw is not None, "a live sqlite3 connection"
    statement = _one_row(cols)
    try:
        cur = raw.cursor()
        cur.executemany(statement, rows)
        (last,) = raw.execute("SELECT last_insert_rowid()").fetchone()
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, type(exc)) from exc
    # The writer holds the write lock (BEGIN IMMEDIATE): the rows got the consecutive
    # rowids after the largest one, in input order.
    return list(range(int(last) - len(rows) + 1, int(last) + 1))
