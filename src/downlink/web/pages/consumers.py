"""Consumers: how far each one is behind, its last error, and the reprocess jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request

from downlink.pipeline import consumers, reprocess
from downlink.pipeline.consumers import Bound
from downlink.store.database import Store
from downlink.web.views import Csv, View, router_of


def _all(conn: Connection, bounds: list[Bound]) -> dict[str, Any]:
    return {
        "consumers": consumers.status(conn, bounds),
        "reprocess": reprocess.recent(conn, kinds=reprocess.revision_kinds(bounds)),
    }


async def _data(request: Request) -> dict[str, Any]:
    store: Store = request.app.state.store
    bounds: list[Bound] = request.app.state.consumer_runner.bounds
    return await store.read(_all, bounds)


CSV_COLUMNS = (
    "name", "source", "follows", "handled", "lag_records", "lag_seconds", "last_ts",
    "failures", "error",
)


def _csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    return [[c[k] for k in CSV_COLUMNS] for c in data["consumers"]]


# Each consumer's cursor, lag and last error; recent reprocess jobs.
VIEW = View(
    "/consumers",
    "Consumers",
    "consumers.html",
    _data,
    active="consumers",
    csv=Csv("consumers", CSV_COLUMNS, _csv_rows),
)
router = router_of([VIEW])
