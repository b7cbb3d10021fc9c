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

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import JSON, Connection

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


def insert_returning_ids(
    conn: Connection, columns: Sequence[str], params: list[dict[str, Any]]
) -> list[int]:
    """Insert ``params`` (dicts over ``columns``) and return their ids in input order."""
    cols = tuple(columns)
    json_cols = {name for name in cols if isinstance(records.c[name].type, JSON)}
    chunk = max(1, _MAX_PARAMS // len(cols))
    ids: list[int] = []
    for start in range(0, len(params), chunk):
        part = params[start : start + chunk]
        flat: list[Any] = []
        for p in part:
            for name in cols:
                value = p[name]
                if name in json_cols and value is not None:
                    value = orjson.dumps(value).decode()
                flat.append(value)
        result = conn.exec_driver_sql(_statement(cols, len(part)), tuple(flat))
        ids.extend(sorted(int(row[0]) for row in result))
    return ids
