"""Fast multi-row INSERT of records on PostgreSQL: one array parameter per column.

SQLAlchemy's "insertmanyvalues" renders ``INSERT ... VALUES (...), (...), ...`` with
one placeholder per value (24 per record); psycopg then rewrites that statement text
on the client for every execution, and statements that long are never cached. The
profile of a bulk load showed about 60 % of the writer thread in that rewriting
(``psycopg._queries._query2pg_nocache``). Here each column travels as one array and
the statement text is short and the same for every batch:

    INSERT INTO records (c1, ...) SELECT c1, ... FROM unnest(%(c1)s::T1[], ...)
        WITH ORDINALITY AS u(c1, ..., n) ORDER BY n RETURNING id

Rows are inserted in input order, so the sequence hands out ascending ids in that
order; the ids are sorted to match the input rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Dialect, text

from downlink.store.tables import records


@lru_cache(maxsize=8)
def _statement(columns: tuple[str, ...], dialect: Dialect) -> tuple[Any, tuple[bool, ...]]:
    casts = []
    is_json = []
    for name in columns:
        column_type = records.c[name].type
        json = isinstance(column_type, JSON)
        is_json.append(json)
        sql_type = "TEXT" if json else column_type.compile(dialect=dialect)
        casts.append(f"CAST(:{name} AS {sql_type}[])")
    select_cols = ", ".join(
        f"CAST(u.{name} AS JSON)" if json else f"u.{name}"
        for name, json in zip(columns, is_json, strict=True)
    )
    sql = (
        f"INSERT INTO records ({', '.join(columns)}) SELECT {select_cols} "
        f"FROM unnest({', '.join(casts)}) WITH ORDINALITY AS u({', '.join(columns)}, n) "
        "ORDER BY u.n RETURNING id"
    )
    return text(sql), tuple(is_json)


def insert_returning_ids(
    conn: Connection, columns: Sequence[str], params: list[dict[str, Any]]
) -> list[int]:
    """Insert ``params`` (dicts over ``columns``) and return their ids in input order."""
    stmt, is_json = _statement(tuple(columns), conn.dialect)
    arrays: dict[str, list[Any]] = {}
    for name, json in zip(columns, is_json, strict=True):
        if json:
            arrays[name] = [
                None if p[name] is None else orjson.dumps(p[name]).decode() for p in params
            ]
        else:
            arrays[name] = [p[name] for p in params]
    ids = sorted(int(i) for i in conn.execute(stmt, arrays).scalars())
    return ids
