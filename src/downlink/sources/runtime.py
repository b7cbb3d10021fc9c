"""What a source's request handlers reach through the running app.

A source's routers run inside the core's app; these helpers name what they may use
(``request.app.state`` holds it): the :class:`~downlink.store.database.Store`, the
source's own settings and the metrics its ``Source.metrics`` registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection

from downlink.security.senders import SenderGuard
from downlink.settings import Settings
from downlink.store.database import Store


def store_of(conn: HTTPConnection) -> Store:
    """The app's store (reads, admin writes, the group-commit writer)."""
    store: Store = conn.app.state.store
    return store


def settings_of(conn: HTTPConnection, source: str) -> Mapping[str, Any]:
    """The effective settings of ``source`` (``Settings.sources[source]``)."""
    settings: Settings = conn.app.state.settings
    return settings.sources[source]


def metrics_of(conn: HTTPConnection, source: str) -> Any:
    """What ``source``'s ``Source.metrics(registry)`` returned for this app."""
    return store_of(conn).metrics.by_source[source]


def analytics_of(conn: HTTPConnection, source: str) -> Any | None:
    """What ``source``'s ``Source.analytics_reads`` built on the ClickHouse analytics
    store, or None when ``DOWNLINK_ANALYTICS_URL`` is not set (read the SQL store)."""
    shipping = getattr(conn.app.state, "analytics", None)
    if shipping is None:
        return None
    return shipping.reads.get(source)


def senders_of(conn: HTTPConnection) -> SenderGuard:
    """The app's sender guard: bindings of sender ids and per-sender rate limits."""
    guard: SenderGuard = conn.app.state.senders
    return guard
