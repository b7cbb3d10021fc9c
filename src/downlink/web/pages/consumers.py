"""Consumers: how far each one is behind, its last error, and the reprocess jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from downlink.pipeline import consumers, reprocess
from downlink.pipeline.consumers import Bound
from downlink.store.database import Store
from downlink.web.rendering import twin, web_of

router = APIRouter(include_in_schema=False)


def _all(conn: Connection, bounds: list[Bound]) -> dict[str, Any]:
    return {
        "consumers": consumers.status(conn, bounds),
        "reprocess": reprocess.recent(conn),
    }


async def _data(request: Request) -> dict[str, Any]:
    store: Store = request.app.state.store
    bounds: list[Bound] = request.app.state.consumer_runner.bounds
    return await store.read(_all, bounds)


@router.get("/consumers.json")
async def consumers_json(request: Request) -> Response:
    """JSON twin of the consumers page."""
    return twin(await _data(request))


@router.get("/consumers")
async def consumers_page(request: Request) -> Response:
    """Each consumer's cursor, lag and last error; recent reprocess jobs."""
    data = await _data(request)
    return web_of(request).page("consumers.html", title="Consumers", active="consumers", data=data)
