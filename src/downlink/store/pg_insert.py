"""Fast multi-row INSERT of records on PostgreSQL: ``COPY`` with ids taken beforehand.

SQLAlchemy's "insertmanyvalues" renders ``INSERT ... VALUES (...), (...), ...`` with
one placeholder per value, which psycopg rewrites on the client for every execution
(about 60 % of the writer thread in the first bulk profile). One array per column
(``unnest``) fixed the rewriting, but psycopg dumps list elements in Python: about
25 us of server CPU per record, most of the writer thread in the next profile.

``COPY`` formats rows in psycopg's C code (about 5 us per record) and is the fastest
way into PostgreSQL. It cannot return the ids it assigns, so the batch first takes
``n`` values from the table's sequence (one round trip) and copies them in as ``id``.
Ids are ascending in input order, as before. Errors are raised as
SQLAlchemy's classes (a unique violation, a retransmission stored by another worker
process between the writer's lookup and this copy, as
:class:`~sqlalchemy.exc.IntegrityError`, which the writer retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, Connection
from sqlalchemy.exc import DBAPIError

from downlink.store.tables import records

_NEXT_IDS = (
    "SELECT nextval(pg_get_serial_sequence('records', 'id')) FROM generate_series(1, %s)"
)


def _json_columns(columns: Sequence[str]) -> frozenset[str]:
    return frozenset(name for name in columns if isinstance(records.c[name].type, JSON))


def insert_returning_ids(
    conn: Connection, columns: Sequence[str], params: list[dict[str, Any]]
) -> list[int]:
    """Insert ``params`` (dicts over ``columns``) and return their ids in input order."""
    if not params:
        return []
    ids = sorted(int(i) for i in conn.exec_driver_sql(_NEXT_IDS, (len(params),)).scalars())
    as_json = sorted(_json_columns(columns))
    plain = [name for name in columns if name not in as_json]
    take_plain = itemgetter(*plain)
    raw = conn.connection.driver_connection
    assert raw is not None, "a live psycopg connection"
    statement = f"COPY records (id, {', '.join(plain + as_json)}) FROM STDIN"
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            write_row = copy.write_row
            for new_id, p in zip(ids, params, strict=True):
                row = [new_id, *take_plain(p)]
                for name in as_json:
                    value = p[name]
                    row.append(None if value is None else orjson.dumps(value).decode())
                write_row(row)
    except psycopg.Error as exc:
        # Raised by psycopg itself, not through SQLAlchemy: wrap it in the matching
        # SQLAlchemy class (IntegrityError, DataError, OperationalError, ...) so callers
        # tell a refused record from an outage as they do for every other statement.
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return ids
