"""The OONI API's heavy reads, on whichever store serves them.

:class:`Reads` names the two questions (a search page, an aggregation) and the runner
that calls them: the SQL functions of :mod:`.search` and :mod:`.aggregation` with the
store's ``read``, or their ClickHouse twins (:mod:`.clickhouse`) when the analytics
store is configured. The handlers call ``reads_of(request)`` and never branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from downlink.sources.ooni import aggregation, search
from downlink.sources.runtime import analytics_of, store_of


@dataclass(frozen=True)
class Reads:
    """``read(fn, *args)`` runs ``fn(handle, *args)`` off the event loop."""

    read: Callable[..., Awaitable[Any]]
    search: Callable[..., list[dict[str, Any]]]
    aggregate: Callable[..., list[dict[str, Any]]]


def reads_of(request: HTTPConnection, *, sql_only: bool = False) -> Reads:
    """ClickHouse's reads when configured, else (or with ``sql_only``: a question
    ClickHouse cannot answer, see :func:`aggregation.needs_test_lists`) the SQL store's."""
    found: Reads | None = None if sql_only else analytics_of(request, "ooni")
    if found is not None:
        return found
    return Reads(store_of(request).read, search.run, aggregation.run)
