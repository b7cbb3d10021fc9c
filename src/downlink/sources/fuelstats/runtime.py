"""The source's background work in a server process: consumer, jobs, deliveries.

Three loops, started by the app's lifespan (:func:`lifespan`), each polling every
``POLL_S`` and woken at once by :meth:`Runtime.wake`:

* the failure consumer follows ``fuel_action_logs`` from its cursor in
  ``fuel_cursors``; each batch and the cursor move commit together, and the cursor only
  moves from the value read (a second process racing it rolls back), so every
  committed log is handled once. On PostgreSQL, ids are taken before commit, so it
  only reads logs older than ``SETTLE_S`` (a log committed later with a lower id
  would otherwise be passed over).
* the job loop runs ``fuel_refilter`` jobs on the core job queue (claim, steps,
  heartbeat, finish), one short transaction per step.
* the delivery loop sends due ``fuel_outbox`` rows (:mod:`.notify`).

The core's own consumer and job runners take over the first two once the source
registry drives them; the delivery loop stays the source's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from anyio import to_thread
from sqlalchemy import Connection, select, update

from downlink.sources.base import Consumer, LogRecord
from downlink.sources.fuelstats import failures, notify, refilter
from downlink.sources.fuelstats.config import FuelSettings
from downlink.sources.fuelstats.context import FuelContext, context_of_app
from downlink.sources.fuelstats.sink import dialect_insert
from downlink.sources.fuelstats.tables import action_logs, cursors
from downlink.store import jobs
from downlink.store.database import Store

log = logging.getLogger(__name__)

POLL_S = 1.0
SETTLE_S = 5.0
STALE_AFTER_S = 60.0


class CursorMoved(Exception):
    """Another process advanced the consumer's cursor first; this batch rolls back."""


def consume_batch(conn: Connection, consumer: Consumer, settle_s: float) -> int:
    """Handle the next batch after the consumer's cursor; return how many logs."""
    start = conn.execute(
        select(cursors.c.seq).where(cursors.c.name == consumer.name)
    ).scalar_one_or_none()
    if start is None:
        conn.execute(
            dialect_insert(conn, cursors)
            .values(name=consumer.name, seq=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        start = 0
    query = select(action_logs).where(action_logs.c.id > start)
    if settle_s > 0:
        query = query.where(action_logs.c.ts_reception <= time.time() - settle_s)
    rows = conn.execute(query.order_by(action_logs.c.id).limit(consumer.batch_max)).mappings()
    batch = [LogRecord(seq=int(r["id"]), ts=float(r["ts_reception"]), row=dict(r)) for r in rows]
    if not batch:
        return 0
    consumer.handle(conn, batch)
    moved = conn.execute(
        update(cursors)
        .where(cursors.c.name == consumer.name, cursors.c.seq == start)
        .values(seq=batch[-1].seq)
    )
    if moved.rowcount != 1:
        raise CursorMoved(consumer.name)
    return len(batch)


class Runtime:
    """The background loops of one server process."""

    def __init__(self, store: Store, ctx: FuelContext) -> None:
        self.store = store
        self.ctx = ctx
        self.consumer = failures.consumer(lambda: ctx.settings.channels)
        self.settle_s = 0.0 if store.is_sqlite else SETTLE_S
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None

    @property
    def settings(self) -> FuelSettings:
        """The source's settings."""
        return self.ctx.settings

    def wake(self) -> None:
        """Look for work now."""
        self._wake.set()

    def start(self, *, core_runs_consumers: bool = False) -> None:
        """Start the loops on the running event loop.

        ``core_runs_consumers``: the core drives the source's consumers and job kinds
        (then only the delivery loop runs here).
        """
        self._http = httpx.AsyncClient(timeout=10)
        loop = asyncio.get_running_loop()
        steps = (self.deliver,) if core_runs_consumers else (
            self.consume, self.run_jobs, self.deliver)
        for step in steps:
            self._tasks.append(loop.create_task(self._loop(step)))

    async def stop(self) -> None:
        """Stop after the work in flight."""
        self._stopping = True
        self.wake()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=15)
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()

    async def _loop(self, step: Callable[[], Awaitable[bool]]) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                busy = await step()
            except Exception as exc:  # noqa: BLE001 - the database may be down; retry later
                log.warning("fuel-stats %s: %s", getattr(step, "__name__", step), exc)
                busy = False
            if busy or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def consume(self) -> bool:
        """Handle one batch of new action logs; True if there was one."""
        try:
            return bool(
                await self.store.admin_write(consume_batch, self.consumer, self.settle_s)
            )
        except CursorMoved:
            return True

    async def run_jobs(self) -> bool:
        """Run one refilter job to its end; True if there was one."""
        kinds = (refilter.KIND,)
        if not await self.store.read(jobs.has_runnable, kinds, STALE_AFTER_S):
            return False
        owner = jobs.new_owner()
        job = await self.store.admin_write(jobs.claim, kinds, owner, STALE_AFTER_S)
        if job is None:
            return False
        job_id = int(job["id"])
        try:
            while True:
                if self._stopping:
                    await self.store.admin_write(jobs.release, job_id, owner)
                    return False
                cursor = await self.store.admin_write(_job_step, job_id, owner)
                if cursor is not None:
                    continue
                if await self.store.admin_write(jobs.finish, job_id, owner):
                    self.ctx.report_cache.clear()
                    return True
        except jobs.JobLost as exc:
            log.warning("fuel refilter job %d: %s", job_id, exc)
        except Exception as exc:  # noqa: BLE001 - a failed job must not stop the server
            log.exception("fuel refilter job %d failed", job_id)
            await self.store.admin_write(jobs.fail, job_id, owner, f"{type(exc).__name__}: {exc}")
        return True

    async def deliver(self) -> bool:
        """Send the due notifications; True if there were some."""
        taken = await self.store.admin_write(notify.take_due, notify.now())
        for due in taken:
            error = await self._send(due)
            await self.store.admin_write(notify.record, due, error, self.settings, notify.now())
            if error is not None:
                log.warning("fuel failure %s via %s: %s", due.failure_key, due.channel, error)
        return bool(taken)

    async def _send(self, due: notify.Due) -> str | None:
        if due.channel == "webhook" and self.settings.webhook_url and self._http is not None:
            return await notify.send_webhook(self._http, self.settings.webhook_url, due)
        if due.channel == "email" and self.settings.smtp_host:
            return await to_thread.run_sync(notify.send_mail, self.settings, due)
        return f"channel {due.channel} is no longer configured"


def _job_step(conn: Connection, job_id: int, owner: str) -> int | None:
    """One step of a claimed job, its progress saved in the same transaction."""
    jobs.take_restart(conn, job_id, owner)
    job = jobs.get(conn, job_id)
    if job is None:
        raise jobs.JobLost(f"job {job_id} is gone")
    cursor = refilter.step(conn, job)
    if cursor is not None:
        changed = int(jobs.get(conn, job_id)["changed"] or 0)  # type: ignore[index]
        jobs.progress(conn, job_id, owner, cursor=cursor, done=cursor, changed=changed)
    return cursor


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the source's background loops for the life of the app."""
    runtime = Runtime(app.state.store, context_of_app(app))
    app.state.fuelstats_runtime = runtime
    runtime.start(core_runs_consumers=hasattr(app.state, "consumer_runner"))
    try:
        yield
    finally:
        await runtime.stop()
