"""The processors every record goes through, in order, inside the writer's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from downlink.pipeline.crashes import GuiltyProcessor
from downlink.sources.registry import Sources
from downlink.store.rollups import update_rollups
from downlink.store.writer import BatchProcessor


def default_processors(sources: Sources | None = None) -> list[BatchProcessor]:
    """Return fresh instances of the standard per-record processors, then the
    sources' (``Source.processors``, e.g. substrate's node connections)."""
    # Rollups come after the crash processor: they count records by guilty_id.
    found: list[BatchProcessor] = [GuiltyProcessor(), update_rollups]
    for source in sources or ():
        found.extend(cast(Sequence[BatchProcessor], source.processors))
    return found
