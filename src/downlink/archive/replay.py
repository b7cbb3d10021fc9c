"""Replaying archived rows through a source's consumers (``downlink reprocess
--from-archive``).

For each consumer of the source that follows an archived table: one transaction calls
its ``reset(since, until)`` (forgetting what it derived from rows received in the
range), then the archived rows of the range are handed to its ``handle`` file by file,
one transaction each, as the live consumer would see them (``LogRecord``). The
derived data is then what applying each archived row once gives, even for rows that
retention has removed from the database; running it again (after an interruption, or
twice) gives the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from downlink.archive.days import Bound, rows_between
from downlink.archive.storage import Storage
from downlink.pipeline.consumers import Bound as ConsumerBound
from downlink.sources.base import LogRecord


@dataclass
class Replayed:
    """What a replay did for one consumer."""

    consumer: str
    files: int = 0
    rows: int = 0


def replay(
    engine: Engine,
    storage: Storage,
    archives: Sequence[Bound],
    consumers: Sequence[ConsumerBound],
    since: float,
    until: float,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Replayed]:
    """Rebuild what ``consumers`` derived from rows received in ``[since, until)``."""
    out = []
    for archive in archives:
        for bound in consumers:
            if bound.source != archive.source or bound.table.name != archive.table.name:
                continue
            done = Replayed(bound.name)
            consumer = bound.consumer
            if not dry_run and consumer.reset is not None:
                with engine.begin() as conn:
                    consumer.reset(conn, since, until)
            id_col, ts_col = archive.archive.id_column, archive.archive.ts_column
            for rows in rows_between(storage, archive, since, until, progress):
                records = [LogRecord(int(r[id_col]), float(r[ts_col]), r) for r in rows]
                if not dry_run:
                    with engine.begin() as conn:
                        for start in range(0, len(records), consumer.batch_max):
                            consumer.handle(conn, records[start : start + consumer.batch_max])
                done.files += 1
                done.rows += len(records)
            out.append(done)
    return out
