"""Nodes: substrate nodes connected over websocket and the messages they sent lately.

Served at ``/substrate`` because ``/nodes`` is the nodes JSON API (api/nodes.py).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request

from downlink.sources.substrate import config
from downlink.sources.substrate.analytics import reads_of
from downlink.sources.substrate.queries import list_connections
from downlink.store.database import Store
from downlink.web import params
from downlink.web.rendering import when
from downlink.web.views import Csv, View, router_of

DEFAULT_MINUTES = 60
NODES_SHOWN = 500


def _both(conn: Connection, now: float, stale: float, since: float) -> dict[str, Any]:
    return {"nodes": list_connections(conn, now, stale)[:NODES_SHOWN]}


async def _data(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    minutes = params.integer(query, "minutes", 1, 60 * 24 * 31) or DEFAULT_MINUTES
    store: Store = request.app.state.store
    idle = config.of(store.settings)["ws_idle_timeout_s"]
    now = time.time()
    found = await store.read(_both, now, idle if idle > 0 else 300.0, now - minutes * 60)
    reads = reads_of(request)
    found["messages"] = await reads.read(reads.messages, now - minutes * 60)
    nodes = [{k: v for k, v in n.items() if k not in ("info",)} for n in found["nodes"]]
    return {"minutes": minutes, "nodes": nodes, "messages": found["messages"]}


CSV_COLUMNS = (
    "peer_id", "name", "chain", "version", "ip_addr", "endpoint", "connection", "node",
    "connected_at", "last_seen", "messages", "status",
)


def _csv_rows(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The nodes table as shown (times in UTC, the endpoint and the status spelled out)."""
    return [
        (
            n["peer_id"], n["name"], n["chain"], n["version"], n["ip_addr"],
            "/audit" if n["audit"] else "/", n["connection"], n["node"],
            when(n["connected_at"]), when(n["last_seen"]), n["messages"],
            "online" if n["online"] else "offline",
        )
        for n in data["nodes"]
    ]


# The connections, then each node's message types lately; JSON twin, nodes as CSV.
VIEW = View(
    "/substrate",
    "Nodes",
    "substrate/nodes.html",
    _data,
    active="nodes",
    csv=Csv("substrate-nodes", CSV_COLUMNS, _csv_rows),
)
router = router_of([VIEW])
