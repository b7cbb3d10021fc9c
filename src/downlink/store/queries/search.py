"""One search box for every view: what a typed text could be, answered from indexes.

The core looks in the record log: a record id, a machine id, a build. Each source adds
what it knows (``Source.search``: Clear Linux a classification and crash groups,
substrate peer ids). Each lookup uses an index or a small table: never a scan of
``records``. Event ids are not searched (they have no index).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from downlink.store.tables import records

Row = dict[str, Any]
GROUPS_SHOWN = 20

Lookup = Callable[[Connection, str], Mapping[str, Any]]


def escape_like(text: str) -> str:
    """``text`` escaped for ``LIKE … ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _exists(conn: Connection, *where: Any) -> bool:
    return conn.execute(select(records.c.id).where(*where).limit(1)).first() is not None


def search(conn: Connection, text: str, lookups: Sequence[Lookup] = ()) -> dict[str, Any]:
    """Return what ``text`` names: ``record_id``, ``machine_id``, ``build`` (each None
    when nothing matches), then what each of ``lookups`` (the sources') adds."""
    found: dict[str, Any] = {"record_id": None, "machine_id": None, "build": None}
    if text.isascii() and text.isdigit() and int(text) < 2**62:
        if _exists(conn, records.c.id == int(text)):
            found["record_id"] = int(text)
    if _exists(conn, records.c.machine_id == text):
        found["machine_id"] = text
    if _exists(conn, records.c.build == text):
        found["build"] = text
    for lookup in lookups:
        found.update(lookup(conn, text))
    return found
