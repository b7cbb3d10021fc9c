"""Consumers: how far each one is behind, its last error, the reprocess jobs, and the
sources' periodic tasks (their last run, error and progress)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request

from downlink.pipeline import consumers, reprocess, tasks
from downlink.pipeline.consumers import Bound
from downlink.settings import Settings
from downlink.sources.base import Source, Task
from downlink.store.database import Store
from downlink.web.views import Csv, View, router_of


def _all(conn: Connection, bounds: list[Bound], declared: list[tuple[Source, Task]],
         settings: Settings) -> dict[str, Any]:
    return {
        "consumers": consumers.status(conn, bounds),
        "reprocess": reprocess.recent(conn, kinds=reprocess.revision_kinds(bounds)),
        "tasks": tasks.status(conn, declared, settings),
    }


async def _data(request: Request) -> dict[str, Any]:
    store: Store = request.app.state.store
    bounds: list[Bound] = request.app.state.consumer_runner.bounds
    settings: Settings = request.app.state.settings
    return await store.read(_all, bounds, list(settings.registry.tasks), settings)


CSV_COLUMNS = (
    "name", "source", "follows", "handled", "lag_records", "lag_seconds", "last_ts",
    "failures", "error",
)


def _csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    return [[c[k] for k in CSV_COLUMNS] for c in data["consumers"]]


# Each consumer's cursor, lag and last error; recent reprocess jobs; the sources' tasks.
VIEW = View(
    "/consumers",
    "Consumers",
    "consumers.html",
    _data,
    active="consumers",
    csv=Csv("consumers", CSV_COLUMNS, _csv_rows),
)
router = router_of([VIEW])
