"""Retention: every source's expired rows, purged in short transactions.

A source with a ``purge`` and a ``retention`` setting (``Source``) has its rows older
than that many hours removed: the core calls ``purge(conn, cutoff)`` (with a third
argument, the most rows a call may delete, when the source names a
``purge_batch`` setting) again and again, one short write transaction each, until it
returns 0; on SQLite the group-commit writer waits for at most one call. Which rows
go, and how, is the source's business (its ``purge`` may use ``follow.clamp_cursors``
and ``partitions.drop_expired``).

:class:`Maintenance` is the background task of a server: it refreshes the database
size gauge, keeps the months ahead of a partitioned ``records`` and runs the purge
every ``DOWNLINK_PURGE_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Connection, text

from downlink.settings import Settings
from downlink.sources.base import Source
from downlink.store import partitions

log = logging.getLogger(__name__)


def cutoff_for(hours: float, now: float | None = None) -> float:
    """Return the reception time before which rows are expired."""
    return (time.time() if now is None else now) - hours * 3600.0


def retention_hours(settings: Settings, source: Source) -> float | None:
    """The source's retention in hours (None: it has no purge or no retention)."""
    if source.purge is None or source.retention is None:
        return None
    return float(settings.sources[source.name][source.retention])


def source_cutoffs(
    settings: Settings, now: float | None = None, *, hours: float | None = None
) -> list[tuple[Source, float]]:
    """Each source with a purge and a retention, with its cut-off (retention 0: none).
    ``hours`` replaces every source's retention (``downlink purge --older-than-hours``)."""
    out: list[tuple[Source, float]] = []
    for source in settings.registry:
        kept = retention_hours(settings, source)
        if kept is None:
            continue
        if hours is not None:
            kept = hours
        if kept > 0 or hours is not None:
            out.append((source, cutoff_for(kept, now)))
    return out


def purge_step(settings: Settings, source: Source) -> Callable[[Connection, float], int]:
    """``source.purge`` as ``(conn, cutoff) -> rows``, with its batch size when it has one."""
    assert source.purge is not None
    if source.purge_batch is None:
        return source.purge
    return partial(source.purge, limit=int(settings.sources[source.name][source.purge_batch]))


def purge_source(
    run_write: Callable[..., Any], settings: Settings, source: Source, cutoff: float
) -> int:
    """Call the source's purge with ``run_write(fn, *args)`` until it deletes nothing."""
    step = purge_step(settings, source)
    total = 0
    while done := int(run_write(step, cutoff)):
        total += done
    return total


def count_source(conn: Connection, settings: Settings, source: Source, cutoff: float) -> int:
    """How many rows the source's purge would delete: purged in ``conn``'s transaction,
    which the caller rolls back."""
    step = purge_step(settings, source)
    total = 0
    while done := int(step(conn, cutoff)):
        total += done
    return total


async def purge_sources_async(
    admin_write: Callable[..., Any], settings: Settings, *, pause: float = 0.0
) -> dict[str, int]:
    """Run every source's purge (one transaction per call); rows deleted by source."""
    out: dict[str, int] = {}
    for source, cutoff in source_cutoffs(settings):
        step = purge_step(settings, source)
        total = 0
        while done := int(await admin_write(step, cutoff)):
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

    async def run_purge(self) -> dict[str, int]:
        """Run every source's purge with its retention, updating the metrics; rows
        deleted by source."""
        settings = self.store.settings
        metrics = self.store.metrics
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
        return by_source

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
                    await self.run_purge()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - maintenance retries on the next tick
                log.warning("maintenance failed: %s", exc)
            await asyncio.sleep(tick)
