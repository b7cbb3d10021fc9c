"""Retention: delete expired substrate records, never audit ones, in bounded batches.

A record expires ``DOWNLINK_SUBSTRATE_RETENTION_HOURS`` after the server received it
(``ts_reception``, the server's clock; the reference purged on the node's clock, so a
node with a wrong clock lost its data at once or kept it forever). Records that came in
on ``/audit`` carry ``attrs.audit = true`` and are never purged.

On a partitioned ``records`` (PostgreSQL, ``downlink partition``) a month's partition
that lies wholly before the cut-off and holds only records the purge would delete (no
other source's, no audit record) is dropped whole first (``store/partitions.py``); the
rest is purged row by row as below.

Each batch is its own short write transaction of at most ``DOWNLINK_PURGE_BATCH`` rows,
so on SQLite the group-commit writer waits for at most one small batch, and on
PostgreSQL it does not wait at all. Records have no foreign key to
``node_connections``: deleting records or closed connections cannot make a pending
insert fail (see ``downlink.sources.substrate.connections``).

:class:`Maintenance` is the background task of a server: it refreshes the database
size gauge and runs the purge every ``DOWNLINK_PURGE_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    false,
    func,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql

from downlink.settings import Settings
from downlink.sources.base import Source
from downlink.store import follow, partitions
from downlink.store.tables import node_connections, records

log = logging.getLogger(__name__)

SOURCE = "substrate"
T = TypeVar("T")


@dataclass(frozen=True)
class PurgeResult:
    """What one purge removed (or, for a dry run, would remove)."""

    records: int
    connections: int
    dry_run: bool = False


def cutoff_for(hours: float, now: float | None = None) -> float:
    """Return the reception time before which records are expired."""
    return (time.time() if now is None else now) - hours * 3600.0


def _expired(cutoff: float) -> ColumnElement[bool]:
    audit = func.coalesce(records.c.attrs["audit"].as_boolean(), false())
    return and_(records.c.source == SOURCE, records.c.ts_reception < cutoff, audit == false())


def _kept_sql() -> str:
    """The rows a purge never deletes, as SQL for a partition's check."""
    audit = func.coalesce(records.c.attrs["audit"].as_boolean(), false())
    kept = or_(records.c.source != SOURCE, audit == true())
    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(kept.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def drop_record_partitions(conn: Connection, cutoff: float) -> int:
    """Drop the partitions of ``records`` that hold only expired records; rows dropped."""
    if conn.dialect.name != "postgresql":
        return 0
    names, rows = partitions.drop_expired(conn, cutoff, _kept_sql())
    if names:
        log.info("dropped partitions %s (%d expired records)", ", ".join(names), rows)
    return rows


def _stale_connections(cutoff: float) -> ColumnElement[bool]:
    return and_(node_connections.c.audit == false(), node_connections.c.last_seen < cutoff)


def count_expired(conn: Connection, cutoff: float) -> tuple[int, int]:
    """Return how many records and connection rows a purge at ``cutoff`` would delete."""
    n_records = conn.execute(select(func.count()).where(_expired(cutoff))).scalar_one()
    n_conns = conn.execute(
        select(func.count()).select_from(node_connections).where(_stale_connections(cutoff))
    ).scalar_one()
    return int(n_records), int(n_conns)


def purge_records_batch(conn: Connection, cutoff: float, limit: int) -> int:
    """Delete up to ``limit`` expired records (oldest ids first); return how many."""
    ids = select(records.c.id).where(_expired(cutoff)).order_by(records.c.id).limit(limit)
    result = conn.execute(delete(records).where(records.c.id.in_(ids.scalar_subquery())))
    # SQLite hands out the largest id again once its row is gone: keep the cursors of
    # consumers following ``records`` at or below the largest id left.
    follow.clamp_cursors(conn, records)
    return int(result.rowcount or 0)


def purge_connections(conn: Connection, cutoff: float) -> int:
    """Delete non-audit connection rows not seen since ``cutoff``; return how many.

    A connection that is still open but silent for the whole retention period loses its
    row too; its next batch recreates it (the writer upserts), without the identity it
    announced earlier. With the default idle timeout such a connection is long closed.
    """
    result = conn.execute(delete(node_connections).where(_stale_connections(cutoff)))
    return int(result.rowcount or 0)


def purge(
    run_write: Callable[..., Any],
    cutoff: float,
    batch: int,
    *,
    dry_run: bool = False,
    count: Callable[..., Any] | None = None,
) -> PurgeResult:
    """Purge synchronously with ``run_write(fn, *args)`` (one transaction per batch)."""
    if dry_run:
        n_records, n_conns = (count or run_write)(count_expired, cutoff)
        return PurgeResult(n_records, n_conns, dry_run=True)
    total = int(run_write(drop_record_partitions, cutoff))
    while True:
        done = int(run_write(purge_records_batch, cutoff, batch))
        total += done
        if done < batch:
            break
    return PurgeResult(total, int(run_write(purge_connections, cutoff)))


async def purge_async(
    admin_write: Callable[..., Any], cutoff: float, batch: int, *, pause: float = 0.0
) -> PurgeResult:
    """Purge in batches with ``await admin_write(fn, *args)``, yielding between batches."""
    total = int(await admin_write(drop_record_partitions, cutoff))
    while True:
        done = int(await admin_write(purge_records_batch, cutoff, batch))
        total += done
        if done < batch:
            break
        await asyncio.sleep(pause)
    return PurgeResult(total, int(await admin_write(purge_connections, cutoff)))


def source_cutoffs(settings: Settings, now: float | None = None) -> list[tuple[Source, float]]:
    """Each source with a purge and a retention, with its cut-off (retention 0: none)."""
    out: list[tuple[Source, float]] = []
    for source in settings.registry:
        if source.purge is None or source.retention is None:
            continue
        hours = float(settings.sources[source.name][source.retention])
        if hours > 0:
            out.append((source, cutoff_for(hours, now)))
    return out


def purge_source(run_write: Callable[..., Any], source: Source, cutoff: float) -> int:
    """Call ``source.purge`` with ``run_write(fn, *args)`` until it deletes nothing."""
    assert source.purge is not None
    total = 0
    while done := int(run_write(source.purge, cutoff)):
        total += done
    return total


def count_source(conn: Connection, source: Source, cutoff: float) -> int:
    """How many rows ``source.purge`` would delete: purged in ``conn``'s transaction,
    which the caller rolls back."""
    assert source.purge is not None
    total = 0
    while done := int(source.purge(conn, cutoff)):
        total += done
    return total


async def purge_sources_async(
    admin_write: Callable[..., Any], settings: Settings, *, pause: float = 0.0
) -> dict[str, int]:
    """Run every source's purge (one transaction per call); rows deleted by source."""
    out: dict[str, int] = {}
    for source, cutoff in source_cutoffs(settings):
        total = 0
        while done := int(await admin_write(source.purge, cutoff)):
            total += done
            await asyncio.sleep(pause)
        out[source.name] = total
    return out


def database_bytes(conn: Connection) -> int:
    """Return the size of the database: SQLite pages in use, or PostgreSQL's total."""
    if conn.dialect.name == "sqlite":
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        size = conn.execute(text("PRAGMA page_size")).scalar_one()
        return int(pages) * int(size)
    return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


class Maintenance:
    """Background task: database size gauge and the periodic retention purge."""

    SIZE_EVERY = 30.0
    PARTITIONS_EVERY = 3600.0

    def __init__(self, store: Any) -> None:
        self.store = store
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the task and wait for it (a purge batch in flight still commits)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run_purge(self) -> PurgeResult:
        """Run one purge with the configured retention, updating the metrics."""
        settings = self.store.settings
        metrics = self.store.metrics
        try:
            result = await purge_async(
                self.store.admin_write,
                cutoff_for(settings.substrate_retention_hours),
                settings.purge_batch,
            )
        except Exception:
            metrics.purge_runs.labels("error").inc()
            raise
        metrics.purged.labels(SOURCE).inc(result.records)
        try:
            by_source = await purge_sources_async(self.store.admin_write, settings)
        except Exception:
            metrics.purge_runs.labels("error").inc()
            raise
        for name, n in by_source.items():
            metrics.purged.labels(name).inc(n)
            if n:
                log.info("purged %d expired %s rows", n, name)
        metrics.purge_runs.labels("ok").inc()
        return result

    async def ensure_partitions(self) -> list[str]:
        """Create the partitions of ``records`` needed soon (when it is partitioned)."""
        if self.store.dialect != "postgresql":
            return []
        made: list[str] = await self.store.admin_write(partitions.ensure_ahead)
        if made:
            log.info("created partitions %s", ", ".join(made))
        return made

    async def _refresh_size(self) -> None:
        self.store.metrics.db_bytes.set(await self.store.read_primary(database_bytes))

    async def _run(self) -> None:
        interval = float(self.store.settings.purge_interval_s)
        tick = min(self.SIZE_EVERY, interval) if interval > 0 else self.SIZE_EVERY
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + interval
        next_partitions = loop.time()
        while True:
            try:
                if loop.time() >= next_partitions:
                    await self.ensure_partitions()  # a failure retries at the next tick
                    next_partitions = loop.time() + self.PARTITIONS_EVERY
                await self._refresh_size()
                if interval > 0 and loop.time() >= next_purge:
                    next_purge = loop.time() + interval
                    result = await self.run_purge()
                    if result.records:
                        log.info("purged %d expired substrate records", result.records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - maintenance retries on the next tick
                log.warning("maintenance failed: %s", exc)
            await asyncio.sleep(tick)
