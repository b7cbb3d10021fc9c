"""Closing archive days: the open segments of a day that is over become its final files.

A day is *due* when the archive consumer staged rows the closed files do not hold yet
(``archive_days.staged != closed``), the day ended ``DOWNLINK_ARCHIVE_GRACE_S`` ago,
and the consumer has moved past it (it handled a row received after that, or nothing
waits). One process takes the day with a lease (``claimed_until``, so several
workers never close the same day at once, and a closer killed half-way is replaced
when the lease runs out); it writes the day's files from storage alone
(:func:`downlink.archive.days.close_day`, outside any transaction), then, only if they
hold exactly the ``staged`` rows, deletes the open segments and records ``closed``. A
day that gets a late row afterwards is due again and closed again with it.

Every step can be killed and redone: the files are a function of the set of rows, and
segments are deleted only after the files holding their rows. Failures (storage
down, a broken file) are logged, counted, kept on the day's row and shown as the
consumer's error on ``/consumers``; the closer retries after 0.5 s, doubling up to
``DOWNLINK_CONSUMER_RETRY_MAX_S``. Each server process runs an :class:`ArchiveCloser`
every ``DOWNLINK_ARCHIVE_CLOSE_S``; ``downlink archive`` calls :func:`close_due`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from anyio import from_thread, to_thread
from sqlalchemy import Connection, and_, func, or_, select, update

from downlink.archive import days
from downlink.archive.consumer import Archiving, consumer_name
from downlink.archive.storage import StorageError
from downlink.store import follow
from downlink.store.tables import archive_days, consumers

log = logging.getLogger(__name__)

LEASE_S = 15.0
RENEW_S = 5.0
ERROR_MAX = 2000
T = TypeVar("T")


@dataclass(frozen=True)
class Due:
    """A day to close."""

    archive: str
    day: str


def _moved_past(conn: Connection, archiving: Archiving, table: str, after: float) -> bool:
    name = consumer_name(table)
    row = conn.execute(
        select(consumers.c.txid, consumers.c.last_id, consumers.c.last_ts)
        .where(consumers.c.name == name)
    ).first()
    if row is None:
        return False
    if row.last_ts is not None and float(row.last_ts) >= after:
        return True
    bound = archiving.of_table(table)[0]
    cursor = follow.Cursor(int(row.txid), int(row.last_id))
    return not follow.has_after(conn, bound.table, cursor)


def due(conn: Connection, archiving: Archiving, now: float) -> list[Due]:
    """The days ready to close, oldest first."""
    by_key = {b.key: b for b in archiving.bounds}
    latest = now - archiving.grace_s - days.DAY
    if latest < 0:
        return []  # a grace longer than the epoch: nothing is over
    last_day = days.stamp(days.day_of(latest))
    rows = conn.execute(
        select(archive_days.c.archive, archive_days.c.day)
        .where(
            archive_days.c.staged != archive_days.c.closed,
            archive_days.c.day <= last_day,
            or_(archive_days.c.claimed_until.is_(None), archive_days.c.claimed_until < now),
        )
        .order_by(archive_days.c.day, archive_days.c.archive)
    ).all()
    out: list[Due] = []
    past: dict[tuple[str, str], bool] = {}
    for archive, day in rows:
        bound = by_key.get(archive)
        if bound is None:
            continue  # an archive no source declares any more
        end = days.day_start(days.parse_day(day)) + days.DAY + archiving.grace_s
        if end > now:
            continue
        key = (bound.table.name, day)
        if key not in past:
            past[key] = _moved_past(conn, archiving, bound.table.name, end)
        if past[key]:
            out.append(Due(archive, day))
    return out


def claim(conn: Connection, item: Due, now: float, lease_s: float = LEASE_S) -> int | None:
    """Take the day for ``lease_s``; its staged count, or None when another has it."""
    where = and_(
        archive_days.c.archive == item.archive, archive_days.c.day == item.day,
        or_(archive_days.c.claimed_until.is_(None), archive_days.c.claimed_until < now),
    )
    taken = conn.execute(update(archive_days).where(where).values(claimed_until=now + lease_s))
    if taken.rowcount != 1:
        return None
    staged = conn.execute(select(archive_days.c.staged).where(
        archive_days.c.archive == item.archive, archive_days.c.day == item.day,
    )).scalar_one()
    return int(staged)


def renew(conn: Connection, item: Due, until: float, now: float) -> bool:
    """Extend the lease of a day this process holds (False: it ran out and another
    process may have taken the day)."""
    kept = conn.execute(update(archive_days).where(
        archive_days.c.archive == item.archive, archive_days.c.day == item.day,
        archive_days.c.claimed_until == until, archive_days.c.claimed_until > now,
    ).values(claimed_until=now + LEASE_S))
    return bool(kept.rowcount == 1)


class Lease:
    """Renews a claimed day's lease every RENEW_S while it is being closed."""

    def __init__(self, item: Due, until: float, run_write: Callable[..., Any]) -> None:
        self.item, self.until, self.run_write = item, until, run_write
        self.renewed = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self.renewed < RENEW_S:
            return
        now = time.time()
        if not self.run_write(renew, self.item, self.until, now):
            raise StorageError(f"{self.item.archive} {self.item.day}: lost the closing lease")
        self.until = now + LEASE_S
        self.renewed = time.monotonic()


def write_day(archiving: Archiving, item: Due, staged: int, lease: Lease | None = None
              ) -> int | None:
    """Write the day's files; drop its segments when they hold the ``staged`` rows.

    Returns the rows closed, or None when a batch staged rows meanwhile (the day stays
    due). A StorageError when the archive holds fewer rows than were staged."""
    bound = next(b for b in archiving.bounds if b.key == item.archive)
    day = days.parse_day(item.day)
    closed = days.close_day(archiving.storage, bound, day,
                            None if lease is None else lease.tick)
    if closed.rows > staged:
        return None
    if closed.rows < staged:
        raise StorageError(
            f"{item.archive} {item.day}: the archive holds {closed.rows} rows, "
            f"{staged} were staged (an open segment is missing)"
        )
    days.drop_segments(archiving.storage, closed.segments)
    return closed.rows


def finish(conn: Connection, item: Due, rows: int | None, now: float) -> None:
    """Record a closed day (or, with None, only release it)."""
    values: dict[str, Any] = {"claimed_until": None, "error": None}
    if rows is not None:
        values.update(closed=rows, closed_at=now)
    conn.execute(update(archive_days).where(
        archive_days.c.archive == item.archive, archive_days.c.day == item.day,
    ).values(**values))


def failed(conn: Connection, archiving: Archiving, item: Due, message: str) -> None:
    """Keep a closing failure on the day's row and show it as its consumer's error."""
    text = f"closing {item.archive} {item.day}: {message}"[:ERROR_MAX]
    conn.execute(update(archive_days).where(
        archive_days.c.archive == item.archive, archive_days.c.day == item.day,
    ).values(claimed_until=None, error=text))
    bound = next((b for b in archiving.bounds if b.key == item.archive), None)
    if bound is not None:
        conn.execute(update(consumers)
                     .where(consumers.c.name == consumer_name(bound.table.name))
                     .values(error=text, updated_at=time.time()))


def open_state(conn: Connection, now: float) -> dict[str, tuple[int, float]]:
    """Per archive: rows not in closed files, and seconds since the end of the oldest
    day not closed (0 when none is over)."""
    rows = conn.execute(
        select(archive_days.c.archive,
               func.sum(archive_days.c.staged - archive_days.c.closed),
               func.min(archive_days.c.day))
        .where(archive_days.c.staged != archive_days.c.closed)
        .group_by(archive_days.c.archive)
    ).all()
    out = {}
    for archive, open_rows, oldest in rows:
        end = days.day_start(days.parse_day(oldest)) + days.DAY
        out[str(archive)] = (int(open_rows), max(0.0, now - end))
    return out


def close_due(
    run_read: Callable[..., Any], run_write: Callable[..., Any], archiving: Archiving,
    now: float | None = None,
) -> list[tuple[Due, int]]:
    """Close every due day in this process (``downlink archive``); raises on failure
    after recording it. ``run_read``/``run_write`` run ``fn(conn, *args)`` in a read or
    write transaction."""
    at = time.time() if now is None else now
    done: list[tuple[Due, int]] = []
    for item in run_read(due, archiving, at):
        claimed_at = time.time()
        staged = run_write(claim, item, claimed_at)
        if staged is None:
            continue
        lease = Lease(item, claimed_at + LEASE_S, run_write)
        try:
            rows = write_day(archiving, item, staged, lease)
        except Exception as exc:
            run_write(failed, archiving, item, f"{type(exc).__name__}: {exc}")
            raise
        run_write(finish, item, rows, time.time())
        if rows is not None:
            done.append((item, rows))
    return done


class ArchiveCloser:
    """Background task of a server process: closes the archive's days once over."""

    def __init__(self, store: Any, archiving: Archiving, *, retry_max_s: float = 60.0) -> None:
        self.store = store
        self.archiving = archiving
        self.every_s = archiving.close_s
        self.retry_max_s = retry_max_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.failures = 0

    def start(self) -> None:
        """Start on the running event loop (nothing when closing is off)."""
        if self._task is not None or self.every_s <= 0:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop after the day in flight (killed half-way, it is simply closed again)."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        finished, _ = await asyncio.wait({task}, timeout=timeout)
        if not finished:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
                self.failures = 0
                wait = self.every_s
            except Exception as exc:  # noqa: BLE001 - storage or database down: retry
                self.failures += 1
                log.warning("archive: %s", exc)
                backoff = 0.5 * 2 ** min(self.failures - 1, 30)
                wait = min(self.retry_max_s, backoff, self.every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def run_once(self) -> int:
        """Close the days due now; how many. A day that fails is recorded and the others
        go on; the first failure is raised at the end (the caller backs off)."""
        now = time.time()
        store = self.store
        closed = 0
        first: Exception | None = None
        for item in await store.read_primary(due, self.archiving, now):
            if self._stopping.is_set():
                break
            claimed_at = time.time()
            staged = await store.admin_write(claim, item, claimed_at)
            if staged is None:
                continue
            lease = Lease(item, claimed_at + LEASE_S, self._write_from_thread)
            try:
                rows = await to_thread.run_sync(write_day, self.archiving, item, staged, lease)
            except Exception as exc:
                store.metrics.archive_close_failures.labels(item.archive).inc()
                message = f"{type(exc).__name__}: {exc}"
                await store.admin_write(failed, self.archiving, item, message)
                first = first or exc
                continue
            await store.admin_write(finish, item, rows, time.time())
            closed += rows is not None
        await self._gauges()
        if first is not None:
            raise first
        return closed

    def _write_from_thread(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = from_thread.run(self.store.admin_write, fn, *args)
        return result

    async def _gauges(self) -> None:
        state = await self.store.read_primary(open_state, time.time())
        metrics = self.store.metrics
        for bound in self.archiving.bounds:
            open_rows, age = state.get(bound.key, (0, 0.0))
            metrics.archive_open_rows.labels(bound.key).set(open_rows)
            metrics.archive_open_days_oldest_seconds.labels(bound.key).set(age)
