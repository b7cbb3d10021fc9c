"""Which store a dashboard reads: ClickHouse when configured, else the SQL store.

A page names its question twice, once per store: the SQL function (the rollups) and
the key of its ClickHouse twin (:mod:`downlink.analytics.dashboards`, registered in
``Shipping.reads``); :func:`read` runs the one that applies, so pages do not branch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


async def read(request: Request, sql: Callable[..., T], twin: str, *args: Any) -> T:
    """``sql(conn, *args)`` on the SQL store, or ``reads[twin](ch, *args)`` on ClickHouse."""
    shipping = request.app.state.analytics
    if shipping is not None:
        result: T = await shipping.ch.read(shipping.reads[twin], *args)
        return result
    found: T = await request.app.state.store.read(sql, *args)
    return found
