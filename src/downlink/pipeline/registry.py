"""The processors every record goes through, inside the writer's transaction.

Only what must commit with the records: the sources' ``Source.processors`` (substrate's
node connections). Everything derived from records (Clear Linux's crash grouping and
rollups) is maintained after the ack by consumers (``Source.consumers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from downlink.sources.registry import Sources
from downlink.store.writer import BatchProcessor


def default_processors(sources: Sources | None = None) -> list[BatchProcessor]:
    """Return the sources' writer processors (``Source.processors``), in load order."""
    found: list[BatchProcessor] = []
    for source in sources or ():
        found.extend(cast(Sequence[BatchProcessor], source.processors))
    return found
