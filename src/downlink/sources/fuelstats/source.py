"""The fuel-stats source: anonymous usage statistics of OpenStack Fuel master nodes."""

from __future__ import annotations

from pathlib import Path

from downlink.sources.base import NavEntry, Source
from downlink.sources.fuelstats import (
    admin,
    analytics,
    api,
    collector,
    config,
    csv_api,
    dashboard,
    deployments,
    failures,
    refilter,
    runtime,
    search_box,
    sink,
    tables,
)


def _channels() -> tuple[str, ...]:
    """The notification channels configured in the environment."""
    return config.load().channels


source = SOURCE = Source(
    name="fuelstats",
    title="Fuel stats",
    routers=(dashboard.router,),
    routes=[
        *collector.routes(),
        *api.routes(),
        *csv_api.routes(),
        *admin.routes(),
        *api.catch_all(),
    ],
    ingest_paths=collector.INGEST_PATHS,
    metadata=tables.metadata,
    migrations=Path(__file__).with_name("migrations"),
    settings=config.SETTINGS,
    nav=(NavEntry("fuelstats", "Fuel", "/fuel", keeps_period=True),),
    search=search_box.find,
    search_template="fuelstats/_search.html",
    templates=Path(__file__).with_name("templates"),
    consumers=(failures.consumer(_channels), deployments.CONSUMER),
    job_kinds=(refilter.JOB, refilter.RECOUNT_JOB),
    sinks=sink.SINKS,
    # GET/HEAD without a token: the sender's ping and the public report.
    open_reads=collector.OPEN_PATHS | api.PUBLIC_PATHS,
    extra={"lifespan": runtime.lifespan},
    senders=collector.SENDER_RULE,
    analytics_tables=(analytics.TABLE,),
    analytics_reads=analytics.reads,
)
