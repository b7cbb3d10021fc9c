"""New action logs into PostgreSQL in two statements: ``COPY``, then one set-based insert.

SQLAlchemy's multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` sends one
placeholder per value, which psycopg rewrites on the client at every execution (most of
the sink's time in a profile: about 60 us of CPU per action log). Here the rows are
copied into a temporary table (psycopg formats ``COPY`` rows in C), and one statement
moves them into ``fuel_action_logs``, skipping keys stored already, and returns the
keys it inserted::

    WITH moved AS (DELETE FROM fuel_action_logs_in RETURNING *)
    INSERT INTO fuel_action_logs (…) SELECT … FROM moved ORDER BY ord
    ON CONFLICT (master_node_uid, external_id) DO NOTHING
    RETURNING master_node_uid, external_id

The temporary table belongs to the connection and is emptied by that same statement
(and at every commit); rolled back with the writer's savepoint when a row is refused,
so a retry starts from an empty table. Ids are handed out in input order. A key stored
meanwhile by another process is waited for by ``ON CONFLICT`` and comes back as not
inserted, as with the SQLAlchemy statement. Errors are raised as SQLAlchemy's classes,
so the writer tells a refused row from an outage as for every other statement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

TEMP = "fuel_action_logs_in"
# The columns the collector writes (``id`` and ``txid`` take their defaults).
COLUMNS = ("master_node_uid", "external_id", "body", "action_type", "action_name",
           "cluster_id", "ended_status", "duration_s", "top_level", "ts_reception")
_JSON = frozenset({"body"})

_CREATE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {TEMP} (ord integer, master_node_uid text, "
    "external_id bigint, body json, action_type text, action_name text, cluster_id bigint, "
    "ended_status text, duration_s double precision, top_level boolean, "
    "ts_reception double precision) ON COMMIT DELETE ROWS"
)
_COPY = f"COPY {TEMP} (ord, {', '.join(COLUMNS)}) FROM STDIN"
_MOVE = (
    f"WITH moved AS (DELETE FROM {TEMP} RETURNING *) "
    f"INSERT INTO fuel_action_logs ({', '.join(COLUMNS)}) "
    f"SELECT {', '.join(COLUMNS)} FROM moved ORDER BY ord "
    "ON CONFLICT (master_node_uid, external_id) DO NOTHING "
    "RETURNING master_node_uid, external_id"
)


def json_text(value: Any) -> str | None:
    """A JSON column's text (orjson; the standard library past 64-bit integers)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Insert the rows whose (master_node_uid, external_id) is not stored yet; return
    the keys inserted. ``rows`` have distinct keys and the :data:`COLUMNS`."""
    raw = conn.connection.driver_connection
    assert raw is not None, "a live psycopg connection"
    statement = _CREATE
    try:
        with raw.cursor() as cur:
            cur.execute(_CREATE)
            statement = _COPY
            with cur.copy(_COPY) as copy:
                for ord_, row in enumerate(rows):
                    copy.write_row([ord_, *[json_text(row[c]) if c in _JSON else row[c]
                                            for c in COLUMNS]])
            statement = _MOVE
            cur.execute(_MOVE)
            return [(str(uid), int(ext)) for uid, ext in cur.fetchall()]
    except psycopg.Error as exc:
        # Raised by psycopg itself, not through SQLAlchemy: the matching SQLAlchemy
        # class (IntegrityError, DataError, OperationalError, …), as pg_insert does.
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
