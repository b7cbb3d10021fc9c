"""The processors every record goes through, in order, inside the writer's transaction."""

from __future__ import annotations

from downlink.pipeline.crashes import GuiltyProcessor
from downlink.store.writer import BatchProcessor


def default_processors() -> list[BatchProcessor]:
    """Return fresh instances of the standard per-record processors."""
    return [GuiltyProcessor()]
