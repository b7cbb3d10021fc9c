"""One search box for every view: what a typed text could be, answered from indexes.

A record id, a machine id, a build, a classification (``*`` wildcards), a crash
group's frame (function or module) or a substrate peer id. Each lookup uses an index
or a small table (crash groups, node connections): never a scan of ``records``.
Event ids are not searched (they have no index).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, or_, select

from downlink.sources.clearlinux.tables import guilty, rollup_class_daily
from downlink.store.tables import node_connections, records

Row = dict[str, Any]
GROUPS_SHOWN = 20


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _exists(conn: Connection, *where: Any) -> bool:
    return conn.execute(select(records.c.id).where(*where).limit(1)).first() is not None


def search(conn: Connection, text: str) -> dict[str, Any]:
    """Return what ``text`` names: ``record_id``, ``machine_id``, ``build``,
    ``classification`` (each None when nothing matches), ``groups`` (crash groups whose
    frame contains it) and ``peers`` (substrate peer ids containing it)."""
    found: dict[str, Any] = {
        "record_id": None, "machine_id": None, "build": None, "classification": None,
    }
    if text.isascii() and text.isdigit() and int(text) < 2**62:
        if _exists(conn, records.c.id == int(text)):
            found["record_id"] = int(text)
    if _exists(conn, records.c.machine_id == text):
        found["machine_id"] = text
    if _exists(conn, records.c.build == text):
        found["build"] = text
    if "/" in text:
        # The daily class counts name every classification ever stored, in few rows.
        t = rollup_class_daily
        pattern = _escape(text).replace("*", "%")
        hit = select(t.c.day).where(t.c.classification.like(pattern, escape="\\")).limit(1)
        if conn.execute(hit).first() is not None:
            found["classification"] = text
    like = "%" + _escape(text) + "%"
    groups = conn.execute(
        select(guilty.c.id, guilty.c.function, guilty.c.module, guilty.c.hide)
        .where(or_(guilty.c.function.like(like, escape="\\"),
                   guilty.c.module.like(like, escape="\\")))
        .order_by(guilty.c.id)
        .limit(GROUPS_SHOWN)
    )
    found["groups"] = [
        {"guilty_id": int(i), "function": f, "module": m, "hide": bool(h)} for i, f, m, h in groups
    ]
    nc = node_connections.c
    peers = conn.execute(
        select(nc.peer_id, func.max(nc.last_seen))
        .where(nc.peer_id.like(like, escape="\\"))
        .group_by(nc.peer_id)
        .order_by(func.max(nc.last_seen).desc())
        .limit(GROUPS_SHOWN)
    )
    found["peers"] = [{"peer_id": p, "last_seen": float(t)} for p, t in peers]
    return found
