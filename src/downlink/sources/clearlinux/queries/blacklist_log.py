"""The history of the "never guilty" list: who changed which frame, when and why."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from downlink.sources.clearlinux.tables import guilty_blacklist_log as log

Row = dict[str, Any]


def record_changes(
    conn: Connection,
    action: str,
    pairs: Iterable[tuple[str, str]],
    *,
    who: str,
    why: str,
    address: str,
    ts: float,
) -> None:
    """Log that ``pairs`` were added to (``"add"``) or removed from the list."""
    rows = [
        {"ts": ts, "action": action, "function": f, "module": m, "who": who, "why": why,
         "address": address}
        for f, m in pairs
    ]
    if rows:
        conn.execute(log.insert(), rows)


def history(conn: Connection, limit: int = 200) -> list[Row]:
    """Return the newest changes first: ``ts, action, function, module, who, why, address``."""
    stmt = select(log).order_by(log.c.id.desc()).limit(limit)
    return [{k: v for k, v in dict(r).items() if k != "id"} for r in conn.execute(stmt).mappings()]


def last_added(conn: Connection) -> dict[tuple[str, str], Row]:
    """Return, per frame, the change that last added it (``ts, who, why``)."""
    newest = (
        select(func.max(log.c.id))
        .where(log.c.action == "add")
        .group_by(log.c.function, log.c.module)
        .scalar_subquery()
    )
    stmt = select(log.c.function, log.c.module, log.c.ts, log.c.who, log.c.why).where(
        log.c.id.in_(newest)
    )
    return {
        (f, m): {"ts": ts, "who": who, "why": why} for f, m, ts, who, why in conn.execute(stmt)
    }
