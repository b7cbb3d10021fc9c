"""What the search box finds among Clear Linux's data: a classification, crash groups.

Both from small tables: the daily class counts name every classification ever stored
in few rows, and crash groups are one row per guilty frame.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select

from downlink.sources.clearlinux.tables import guilty, rollup_class_daily
from downlink.store.queries.search import GROUPS_SHOWN, escape_like


def search(conn: Connection, text: str) -> dict[str, Any]:
    """``classification`` (``text`` when it names stored ones, ``*`` wildcards; else
    None) and ``groups`` (crash groups whose frame contains ``text``)."""
    found: dict[str, Any] = {"classification": None}
    if "/" in text:
        t = rollup_class_daily
        pattern = escape_like(text).replace("*", "%")
        hit = select(t.c.day).where(t.c.classification.like(pattern, escape="\\")).limit(1)
        if conn.execute(hit).first() is not None:
            found["classification"] = text
    like = "%" + escape_like(text) + "%"
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
    return found
