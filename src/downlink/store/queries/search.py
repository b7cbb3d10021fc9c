"""One search box for every view: what a typed text could be, answered from indexes.

The core looks in the record log: a record id, an event id, a machine id, a build.
Each source adds what it knows (``Source.search``: Clear Linux a classification and
crash groups, substrate peer ids). Each lookup uses an index or a small table: never a
scan of ``records``. Event ids are found through a partial index of the records that
have one (migration 0025_event_id_index), whose condition the lookup repeats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy import text as sql

from downlink.store.tables import HAS_EVENT_ID, records

Row = dict[str, Any]
GROUPS_SHOWN = 20
EVENT_RECORDS_SHOWN = 20  # records sharing one event id (a client may reuse one)
EVENT_ID_MAX = 200  # longer text is no event id: not looked up

Lookup = Callable[[Connection, str], Mapping[str, Any]]


def escape_like(text: str) -> str:
    """``text`` escaped for ``LIKE … ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _exists(conn: Connection, *where: Any) -> bool:
    return conn.execute(select(records.c.id).where(*where).limit(1)).first() is not None


def event_records(conn: Connection, event_id: str) -> list[int]:
    """Ids of the records with this event id, newest first (at most
    ``EVENT_RECORDS_SHOWN``); none for the empty text, which no record is indexed by."""
    if not event_id or len(event_id) > EVENT_ID_MAX:
        return []
    stmt = (
        select(records.c.id)
        .where(records.c.event_id == event_id, sql(HAS_EVENT_ID))
        .order_by(records.c.id.desc())
        .limit(EVENT_RECORDS_SHOWN)
    )
    return [int(i) for i in conn.execute(stmt).scalars()]


def search(conn: Connection, text: str, lookups: Sequence[Lookup] = ()) -> dict[str, Any]:
    """Return what ``text`` names: ``record_id``, ``event_records`` (ids of the records
    with that event id, newest first), ``machine_id``, ``build`` (None or empty when
    nothing matches), then what each of ``lookups`` (the sources') adds."""
    found: dict[str, Any] = {
        "record_id": None, "event_records": [], "machine_id": None, "build": None,
    }
    if text.isascii() and text.isdigit() and int(text) < 2**62:
        if _exists(conn, records.c.id == int(text)):
            found["record_id"] = int(text)
    found["event_records"] = event_records(conn, text)
    if _exists(conn, records.c.machine_id == text):
        found["machine_id"] = text
    if _exists(conn, records.c.build == text):
        found["build"] = text
    for lookup in lookups:
        found.update(lookup(conn, text))
    return found
