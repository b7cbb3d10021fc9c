"""The fuel-stats source: anonymous usage statistics of OpenStack Fuel master nodes."""

from __future__ import annotations

from downlink.sources.base import Source
from downlink.sources.fuelstats import api, collector, config, tables, upgrade

SOURCE = Source(
    name="fuelstats",
    title="Fuel stats",
    routes=[*collector.routes(), *api.routes(), *api.catch_all()],
    ingest_paths=collector.INGEST_PATHS,
    metadata=tables.metadata,
    migrations=upgrade.MIGRATIONS,
    settings=config.SETTINGS,
    extra={"open_paths": collector.OPEN_PATHS},
)
