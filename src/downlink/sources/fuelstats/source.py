"""The fuel-stats source: anonymous usage statistics of OpenStack Fuel master nodes."""

from __future__ import annotations

from downlink.sources.base import Source
from downlink.sources.fuelstats import (
    admin,
    api,
    collector,
    config,
    failures,
    refilter,
    runtime,
    tables,
    upgrade,
)


def _channels() -> tuple[str, ...]:
    """The notification channels configured in the environment."""
    return config.load().channels


source = SOURCE = Source(
    name="fuelstats",
    title="Fuel stats",
    routes=[*collector.routes(), *api.routes(), *admin.routes(), *api.catch_all()],
    ingest_paths=collector.INGEST_PATHS,
    metadata=tables.metadata,
    migrations=upgrade.MIGRATIONS,
    settings=config.SETTINGS,
    consumers=(failures.consumer(_channels),),
    job_kinds=(refilter.JOB,),
    extra={"open_paths": collector.OPEN_PATHS, "lifespan": runtime.lifespan},
)
