"""Fast multi-row INSERT of records on SQLite: one statement per chunk, not per row.

SQLAlchemy cannot promise the order of ``RETURNING`` rows on SQLite, so an
``insert().returning(..., sort_by_parameter_order=True)`` runs one INSERT per record;
the ingest profile showed the writer thread spending most of its time there. Here a
chunk of rows goes in one ``INSERT ... VALUES (...), (...) RETURNING id``. The writer
holds the write lock (``BEGIN IMMEDIATE``) and SQLite hands out rowids in insertion
order, which is the order of the VALUES list, so the ids sorted ascending belong to
the rows in input order.
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

# SQLite allows 32766 host parameters per statement (3.32+); stay well below it.
_MAX_PARAMS = 30000


@lru_cache(maxsize=64)
def _statement(columns: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join("?" * len(columns)) + ")"
    return (
        f"INSERT INTO records ({', '.join(columns)}) VALUES "
        + ", ".join([one] * rows)
        + " RETURNING id"
    )


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
