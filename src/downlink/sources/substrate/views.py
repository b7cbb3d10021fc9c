"""Nodes: substrate nodes connected over websocket and the messages they sent lately.

Served at ``/substrate`` because ``/nodes`` is the nodes JSON API (api/nodes.py).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from downlink.sources.substrate.analytics import reads_of
from downlink.sources.substrate.queries import list_connections
from downlink.store.database import Store
from downlink.web import params
from downlink.web.rendering import shows_errors, twin, web_of

router = APIRouter(include_in_schema=False)

DEFAULT_MINUTES = 60
NODES_SHOWN = 500


def _both(conn: Connection, now: float, stale: float, since: float) -> dict[str, Any]:
    return {"nodes": list_connections(conn, now, stale)[:NODES_SHOWN]}


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    minutes = params.integer(query, "minutes", 1, 60 * 24 * 31) or DEFAULT_MINUTES
    store: Store = request.app.state.store
    idle = store.settings.ws_idle_timeout_s
    now = time.time()
    found = await store.read(_both, now, idle if idle > 0 else 300.0, now - minutes * 60)
    reads = reads_of(request)
    found["messages"] = await reads.read(reads.messages, now - minutes * 60)
    nodes = [{k: v for k, v in n.items() if k not in ("info",)} for n in found["nodes"]]
    return {"minutes": minutes, "nodes": nodes, "messages": found["messages"]}


@router.get("/substrate")
@shows_errors("substrate/nodes.html", "Nodes", "nodes")
async def nodes_page(request: Request) -> Response:
    """Render the websocket nodes and their recent message types."""
    data = await _data(request)
    form = dict(request.query_params)
    return web_of(request).page(
        "substrate/nodes.html",
        title="Nodes",
        active="nodes",
        data=data,
        form=form,
        json_href="/substrate.json?" + urlencode(form),
    )


@router.get("/substrate.json")
async def nodes_json(request: Request) -> Response:
    """JSON twin of /substrate."""
    return twin(await _data(request))
