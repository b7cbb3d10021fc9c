"""The processors every record goes through, inside the writer's transaction.

Only what must commit with the records: the sources' ``Source.processors`` (substrate's
node connections). Everything derived from records (Clear Linux's crash grouping and
rollups) is maintained after the ack by consumers (``Source.consumers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from downlink.sources import registry
from downlink.sources.registry import Sources
from downlink.store.writer import BatchProcessor


def default_processors(sources: Sources | None = None) -> list[BatchProcessor]:
    """Return the sources' processors, in source order: for each, fresh instances from
    ``Source.make_processors`` and then ``Source.processors`` (substrate's node connections).

    ``sources`` defaults to the built-in and entry-point ones.
    """
    found: list[BatchProcessor] = []
    for source in registry.load() if sources is None else sources:
        if source.make_processors is not None:
            found.extend(cast(Sequence[BatchProcessor], source.make_processors()))
        found.extend(cast(Sequence[BatchProcessor], source.processors))
    return found
