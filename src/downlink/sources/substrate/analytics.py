"""Substrate's nodes page on whichever store serves it.

The page shows two things: the node connections (``node_connections``, a small table
the server keeps in the SQL store while sockets come and go: always read there) and
each node's message types of the last minutes, counted from the records themselves:
that count runs on ClickHouse (the core's ``records`` table there) when
``DOWNLINK_ANALYTICS_URL`` is set. The same rows in the same order: most recently
received first, messages stored flagged left out.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.requests import HTTPConnection

from downlink.analytics.client import Analytics
from downlink.sources.runtime import analytics_of, store_of
from downlink.sources.substrate import config
from downlink.sources.substrate.queries import SOURCE, _msg, recent_message_types

Row = dict[str, Any]


def message_types(
    ch: Analytics, since: float, limit: int = 1000, kept_hours: float = 0.0
) -> list[Row]:
    """The twin of :func:`.queries.recent_message_types`. ``kept_hours``: the records'
    retention (0: all kept); the rows past it that ClickHouse's TTL has not merged away
    yet are left out, as the SQL purge has deleted them."""
    kept = time.time() - kept_hours * 3600 if kept_hours > 0 else 0.0
    sql = (
        "SELECT machine_id, classification, count(), max(ts_reception) AS last "
        f"FROM {ch.table('records')} FINAL "
        "WHERE source = {source:String} AND ts_reception >= {since:Float64} "
        "AND NOT ifNull(sender_flagged, false) AND (audit OR ts_reception >= {kept:Float64}) "
        f"GROUP BY machine_id, classification ORDER BY last DESC LIMIT {int(limit)}"
    )
    params = {"source": SOURCE, "since": since, "kept": kept}
    return [
        {"peer_id": str(peer), "msg": _msg(str(cls)), "count": int(n), "last_received": float(t)}
        for peer, cls, n, t in ch.query(sql, params)
    ]


@dataclass(frozen=True)
class Reads:
    """``read(fn, *args)`` runs ``fn(handle, *args)`` off the event loop."""

    read: Callable[..., Awaitable[Any]]
    messages: Callable[..., list[Row]]


def reads(ch: Analytics) -> Reads:
    """Substrate's reads on ClickHouse (``Source.analytics_reads``)."""
    return Reads(ch.read, message_types)


def reads_of(request: HTTPConnection) -> Reads:
    """ClickHouse's reads when configured, else the SQL store's."""
    found: Reads | None = analytics_of(request, SOURCE)
    if found is not None:
        kept = float(config.of(request.app.state.settings)["retention_hours"])
        return Reads(found.read, partial(found.messages, kept_hours=kept))
    return Reads(store_of(request).read, recent_message_types)
