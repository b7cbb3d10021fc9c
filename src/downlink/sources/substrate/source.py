"""The substrate source: node telemetry streamed over websockets (docs/nodes.md).

Nodes connect to ``ws://…/`` (kept ``DOWNLINK_SUBSTRATE_RETENTION_HOURS``) and
``ws://…/audit`` (kept for ever); their messages are stored as ``records`` rows with
``source = "substrate"`` (:mod:`.wire`, :mod:`.websocket`). After the ack, the
``substrate_connections`` consumer keeps one ``node_connections`` row per node and
connection (:mod:`.connections`); the JSON API (``/nodes``, ``/reputation``, …,
:mod:`.api`) and the ``/substrate`` page (:mod:`.views`) read them through
:mod:`.queries`. Its tables (:mod:`.tables`, migrations in ``migrations/``), settings
(:mod:`.config`), metrics (:mod:`.metrics`) and retention purge (:mod:`.retention`)
are declared here; the core reads them from this declaration.
"""

from __future__ import annotations

from pathlib import Path

from downlink.sources.base import Archive, NavEntry, Source
from downlink.sources.substrate import analytics, api, config, queries, retention, views, websocket
from downlink.sources.substrate.connections import CONSUMER
from downlink.sources.substrate.metrics import register
from downlink.sources.substrate.tables import metadata
from downlink.sources.substrate.wire import SOURCE

HERE = Path(__file__).parent


def source() -> Source:
    """The substrate source."""
    return Source(
        name=SOURCE,
        title="Substrate nodes",
        routers=(api.router, views.router),
        routes=tuple(websocket.routes),
        ingest_websockets=frozenset({"/", "/audit"}),
        metadata=metadata,
        migrations=HERE / "migrations",
        consumers=(CONSUMER,),
        nav=(NavEntry("nodes", "Nodes", "/substrate"),),
        templates=HERE / "templates",
        settings=config.SETTINGS,
        metrics=register,
        purge=retention.purge,
        retention="retention_hours",
        purge_batch="purge_batch",
        records_expiry=retention.CLICKHOUSE_EXPIRY,
        ws_stall="ws_idle_timeout_s",
        server_options=websocket.uvicorn_options,
        search=queries.search_peers,
        search_template="substrate/_search.html",
        # Its records, as NDJSON by day in the raw archive (downlink archive).
        archives=(Archive("records", "records", where=lambda t: t.c.source == SOURCE),),
        senders=websocket.SENDER_RULE,
        # The nodes page's message counts read the core's ``records`` on ClickHouse.
        analytics_reads=analytics.reads,
    )
