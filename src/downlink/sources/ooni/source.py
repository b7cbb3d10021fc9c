"""The OONI source: what it plugs into the core."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, select

from downlink.sources.base import NavEntry, Source
from downlink.sources.ooni import (
    api,
    clickhouse,
    config,
    fastpath_store,
    probe_services,
    search_box,
    views,
)
from downlink.sources.ooni.archive import archived_until
from downlink.sources.ooni.archive_task import TASK as ARCHIVE_TASK
from downlink.sources.ooni.cli import ooni as ooni_cli
from downlink.sources.ooni.consumer import FASTPATH
from downlink.sources.ooni.metrics import register
from downlink.sources.ooni.tables import fastpath, measurements, metadata

HERE = Path(__file__).parent


PURGE_CHUNK = 2000


def purge(conn: Connection, before_ts: float) -> int:
    """Delete up to PURGE_CHUNK measurements (log and scores) received before the cut-off.

    Once the raw archive has started (the server's task ``ooni_archive`` marks where it
    starts on its first run, before writing anything), log rows are only deleted when
    their hour is archived, so every measurement stays re-processable.
    """
    done = archived_until(conn)
    log_cut = min(before_ts, done) if done else before_ts
    old = (
        select(measurements.c.measurement_uid)
        .where(measurements.c.ts_reception < log_cut)
        .order_by(measurements.c.id)
        .limit(PURGE_CHUNK)
    )
    uids = list(conn.execute(old).scalars())
    stale = select(fastpath.c.measurement_uid).where(fastpath.c.ts_reception < before_ts)
    scored = list(conn.execute(stale.limit(PURGE_CHUNK)).scalars())
    if uids:
        conn.execute(measurements.delete().where(measurements.c.measurement_uid.in_(uids)))
    if scored:
        fastpath_store.delete_uids(conn, scored)
    return max(len(uids), len(scored))


SOURCE = Source(
    name="ooni",
    title="OONI",
    routers=(probe_services.router, api.router, views.router),
    ingest_paths=probe_services.PATHS,
    metadata=metadata,
    migrations=HERE / "migrations",
    consumers=(FASTPATH,),
    nav=(
        NavEntry("ooni", "OONI", "/ooni/measurements", keeps_period=True),
        NavEntry("ooni-chart", "OONI chart", "/ooni/chart", keeps_period=True),
    ),
    templates=HERE / "templates",
    search=search_box.find,
    search_template="ooni/_search.html",
    settings=config.SETTINGS,
    metrics=register,
    purge=purge,
    retention="retention_hours",
    ingest_prefixes=probe_services.PATH_PREFIXES,
    direct_post_prefixes={probe_services.REPORT_PREFIX: probe_services.submit},
    extra={"cli": ooni_cli},
    analytics_tables=(clickhouse.TABLE,),
    analytics_reads=clickhouse.reads,
    tasks=(ARCHIVE_TASK,),
)

# The registry reads ``source``.
source = SOURCE
