"""The substrate source: node telemetry streamed over websockets (docs/nodes.md).

Nodes connect to ``ws://…/`` (kept ``DOWNLINK_SUBSTRATE_RETENTION_HOURS``) and
``ws://…/audit`` (kept for ever); their messages are stored as ``records`` rows with
``source = "substrate"`` (:mod:`.wire`, :mod:`.websocket`). The writer keeps one
``node_connections`` row per node and connection in the records' transaction
(:mod:`.connections`); the JSON API (``/nodes``, ``/reputation``, …, :mod:`.api`)
and the ``/substrate`` page (:mod:`.views`) read them through :mod:`.queries`.

Still in the core for now: its settings (``DOWNLINK_WS_*``,
``DOWNLINK_SUBSTRATE_RETENTION_HOURS``), the ``node_connections`` table and its
migration (``store/tables.py``, ``0002_substrate``) and the retention purge
(``store/retention.py``).
"""

from __future__ import annotations

from pathlib import Path

from downlink.sources.base import Archive, NavEntry, Source
from downlink.sources.substrate import analytics, api, queries, views, websocket
from downlink.sources.substrate.connections import record_connections

HERE = Path(__file__).parent


def source() -> Source:
    """The substrate source."""
    return Source(
        name="substrate",
        title="Substrate nodes",
        routers=(api.router, views.router),
        routes=tuple(websocket.routes),
        ingest_websockets=frozenset({"/", "/audit"}),
        nav=(NavEntry("nodes", "Nodes", "/substrate"),),
        templates=HERE / "templates",
        processors=(record_connections,),
        server_options=websocket.uvicorn_options,
        search=queries.search_peers,
        search_template="substrate/_search.html",
        # Its records, as NDJSON by day in the raw archive (downlink archive).
        archives=(Archive("records", "records", where=lambda t: t.c.source == "substrate"),),
        senders=websocket.SENDER_RULE,
        # The nodes page's message counts read the core's ``records`` on ClickHouse.
        analytics_reads=analytics.reads,
    )
