"""The fuel-stats reads that scan raw action logs, on whichever store serves them.

:class:`Reads` names the two questions (a master node's logs, page by page; the
verify_networks statuses of a CSV window) and the runner that calls them: the SQL
functions (:mod:`.queries`, :mod:`.exports`) with the store's ``read``, or their
ClickHouse twins (:mod:`.analytics`) when the analytics store is configured. The
handlers call ``reads_of(request)`` and never branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from downlink.sources.fuelstats import exports, queries
from downlink.sources.runtime import analytics_of, store_of

SOURCE = "fuelstats"


@dataclass(frozen=True)
class Reads:
    """``read(fn, *args)`` runs ``fn(handle, *args)`` off the event loop."""

    read: Callable[..., Awaitable[Any]]
    action_logs: Callable[..., dict[str, Any]]
    verify_networks: Callable[..., exports.Verify]


def reads_of(request: HTTPConnection) -> Reads:
    """ClickHouse's reads when configured, else the SQL store's."""
    found: Reads | None = analytics_of(request, SOURCE)
    if found is not None:
        return found
    return Reads(store_of(request).read, queries.action_logs_of, exports.verify_networks)
