"""The archive consumers: the sources' archived rows staged after the ack, exactly once.

With ``DOWNLINK_ARCHIVE`` set, the server runs one consumer per table that a source's
``Source.archives`` names (``archive_records``, ``archive_<table>``), on the core's
consumer runner: persisted cursor, lag gauges, ``/consumers``, retry with backoff.
Its ``handle`` keeps each archive's rows of the batch (the archive's ``where``),
writes them as open segments (:func:`downlink.archive.days.stage`: complete objects,
before the transaction commits) and adds them to the day's ``staged`` count in
``archive_days``, in the transaction that moves the cursor. A crash before the
commit re-reads the batch from the same row and overwrites the same segments; a
storage failure (S3 down, disk full) rolls the batch back and the runner retries it
while ingestion goes on. Days are then closed by :mod:`downlink.archive.closer`.

``downlink reprocess --source archive --consumer archive_<table> --since --until``
rebuilds the archive of those days from the database: ``reset`` deletes what the
archive holds for them (refusing when retention has already removed rows the archive
has, which a rebuild would lose), the replay stages the rows again and the closer
writes the same files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from downlink.archive import days
from downlink.archive.storage import Storage, StorageError, open_storage
from downlink.settings import Settings
from downlink.sources.base import Consumer, LogRecord
from downlink.store.tables import archive_days

# The ``--source`` of ``downlink reprocess`` that names the archive consumers.
SOURCE = "archive"


def consumer_name(table: str) -> str:
    """The archive consumer of a table."""
    return f"archive_{table}"


def add_staged(conn: Connection, archive: str, counts: Mapping[str, int]) -> None:
    """Add rows staged per day stamp (in the consumer's transaction)."""
    if not counts:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(archive_days).values([
        {"archive": archive, "day": d, "staged": n, "closed": 0}
        for d, n in sorted(counts.items())
    ])
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[archive_days.c.archive, archive_days.c.day],
        set_={"staged": archive_days.c.staged + stmt.excluded.staged},
    ))


def _kept(
    conn: Connection, bound: days.Bound, rows: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The rows of the batch this archive keeps (its ``where``, asked of the database)."""
    where = bound.archive.where
    if where is None or not rows:
        return rows
    id_col = bound.table.c[bound.archive.id_column]
    ids = [r[bound.archive.id_column] for r in rows]
    keep: set[Any] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        keep.update(conn.execute(
            select(id_col).where(id_col.in_(chunk), where(bound.table))
        ).scalars())
    return [r for r in rows if r[bound.archive.id_column] in keep]


@dataclass
class Archiving:
    """The raw archive of a server: its storage, archives and consumers."""

    storage: Storage
    bounds: list[days.Bound]
    grace_s: float
    linger_s: float
    close_s: float
    batch_max: int = 5000

    def tables(self) -> list[str]:
        """The archived tables, each followed by one consumer (in declaration order)."""
        return list(dict.fromkeys(b.table.name for b in self.bounds))

    def of_table(self, table: str) -> list[days.Bound]:
        """The archives of one table."""
        return [b for b in self.bounds if b.table.name == table]

    def consumers(self) -> list[Consumer]:
        """One consumer per archived table."""
        return [self._consumer(t) for t in self.tables()]

    def _consumer(self, table: str) -> Consumer:
        bounds = self.of_table(table)
        ts_columns = {b.archive.ts_column for b in bounds}
        if len(ts_columns) > 1 or any(b.archive.id_column != "id" for b in bounds):
            raise StorageError(
                f"archives of table {table!r} must share one reception-time column and "
                "follow it by `id`"
            )

        def handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
            rows = [r.row for r in batch]
            for bound in bounds:
                counts = days.stage(self.storage, bound, _kept(conn, bound, rows))
                add_staged(conn, bound.key, counts)

        def reset(conn: Connection, since: float, until: float) -> None:
            for bound in bounds:
                self.reset(conn, bound, since, until)

        return Consumer(
            name=consumer_name(table),
            follows=table,
            handle=handle,
            reset=reset,
            batch_max=self.batch_max,
            ts_column=ts_columns.pop(),
            linger_s=self.linger_s,
        )

    def reset(self, conn: Connection, bound: days.Bound, since: float, until: float) -> None:
        """Forget the archive of the days in ``[since, until)``, which the replay that
        follows stages again from the database (refused when the database no longer
        holds every row the archive has for them)."""
        first, end = days.day_of(since), days.day_of(until)
        stamps = (days.stamp(first), days.stamp(end))
        staged = conn.execute(
            select(func.coalesce(func.sum(archive_days.c.staged), 0)).where(
                archive_days.c.archive == bound.key,
                archive_days.c.day >= stamps[0], archive_days.c.day < stamps[1],
            )
        ).scalar_one()
        ts = bound.table.c[bound.archive.ts_column]
        conds = [ts >= days.day_start(first), ts < days.day_start(end)]
        if bound.archive.where is not None:
            conds.append(bound.archive.where(bound.table))
        stored = conn.execute(select(func.count()).select_from(bound.table).where(*conds))
        held = int(stored.scalar_one())
        if held < int(staged):
            raise StorageError(
                f"{bound.key}: the database holds {held} of the {int(staged)} archived rows "
                f"of {stamps[0]}..{days.stamp(end)} (retention removed the others): "
                "rebuilding the archive from it would lose them"
            )
        day = first
        while day < end:
            days.drop_day(self.storage, bound, day)
            day = day.fromordinal(day.toordinal() + 1)
        conn.execute(archive_days.delete().where(
            archive_days.c.archive == bound.key,
            archive_days.c.day >= stamps[0], archive_days.c.day < stamps[1],
        ))


def archiving(settings: Settings) -> Archiving | None:
    """The raw archive the settings configure (None without DOWNLINK_ARCHIVE or when no
    source archives anything); StorageError on a bad setting or declaration."""
    if not settings.archive:
        return None
    bounds = days.bind(settings.registry)
    if not bounds:
        return None
    storage = open_storage(settings.archive, settings.archive_s3_endpoint or None)
    return Archiving(storage, bounds, settings.archive_grace_s, settings.archive_linger_s,
                     settings.archive_close_s, settings.archive_batch_max)


def archivers(settings: Settings) -> list[tuple[str, Consumer]]:
    """The archive consumers of these settings, as ``(source label, consumer)``."""
    found = archiving(settings)
    return [] if found is None else [(SOURCE, c) for c in found.consumers()]


def clear_claim(conn: Connection, archive: str, day: str) -> None:
    """Release a day's closing lease."""
    conn.execute(update(archive_days).where(
        archive_days.c.archive == archive, archive_days.c.day == day,
    ).values(claimed_until=None))
