"""The processors every record goes through, in order, inside the writer's transaction."""

from __future__ import annotations

from downlink.pipeline.crashes import GuiltyProcessor
from downlink.store.node_connections import record_connections
from downlink.store.rollups import update_rollups
from downlink.store.writer import BatchProcessor


def default_processors() -> list[BatchProcessor]:
    """Return fresh instances of the standard per-record processors."""
    # Rollups come after the crash processor: they count records by guilty_id.
    # record_connections keeps one row per substrate node connection.
    return [GuiltyProcessor(), update_rollups, record_connections]
