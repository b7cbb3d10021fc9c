"""The OONI source: what it plugs into the core."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection

from downlink.sources.base import NavEntry, Source
from downlink.sources.ooni import api, config, probe_services
from downlink.sources.ooni.consumer import FASTPATH
from downlink.sources.ooni.metrics import register
from downlink.sources.ooni.tables import fastpath, measurements, metadata

HERE = Path(__file__).parent


def purge(conn: Connection, before_ts: float) -> int:
    """Delete measurements (log and scores) received before the retention cut-off."""
    scored = conn.execute(fastpath.delete().where(fastpath.c.received_at < before_ts)).rowcount
    logged = conn.execute(
        measurements.delete().where(measurements.c.received_at < before_ts)
    ).rowcount
    return max(scored, logged)


SOURCE = Source(
    name="ooni",
    title="OONI",
    routers=(probe_services.router, api.router),
    ingest_paths=probe_services.PATHS,
    metadata=metadata,
    migrations=HERE / "migrations",
    consumers=(FASTPATH,),
    nav=(NavEntry("ooni", "OONI", "/ooni/measurements"),),
    settings=config.SETTINGS,
    metrics=register,
    purge=purge,
    extra={"ingest_path_prefixes": probe_services.PATH_PREFIXES},
)
