"""The background job runner every server process runs (started by the app's lifespan).

It claims queued jobs from the ``jobs`` table (:mod:`downlink.store.jobs`) and runs
them: a :class:`~downlink.sources.base.JobKind` one step per write transaction
(:func:`~downlink.pipeline.jobkinds.run_step`), a
:class:`~downlink.sources.base.JobDriver` (a source's job that drives its own
transactions, such as Clear Linux's regroup) by its ``run``. A job whose process dies
is taken over once its heartbeat is :data:`STALE_AFTER_S` old; a clean shutdown puts
a running job back to pending at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from downlink.pipeline.jobkinds import run_step
from downlink.sources import registry
from downlink.sources.base import JobContext, JobDriver, JobKind
from downlink.store import jobs

log = logging.getLogger(__name__)

CHUNK = 2000  # items per step a driver takes by default (records of a regroup chunk)
STALE_AFTER_S = 60.0

Write = Callable[..., Awaitable[Any]]


class JobRunner:
    """Background task of a server process: claims and runs queued jobs.

    It looks for a runnable job every ``poll_s`` seconds (jobs queued by other
    processes, jobs of dead processes) and at once when :meth:`wake` is called (this
    process queued one). Database work goes through ``store.admin_write``, one
    short transaction at a time, off the event loop.
    """

    def __init__(
        self,
        store: Any,
        *,
        poll_s: float = 1.0,
        chunk: int = CHUNK,
        stale_after: float = STALE_AFTER_S,
        kinds: Sequence[JobKind] = (),
        drivers: Sequence[JobDriver] | None = None,
    ) -> None:
        self.store = store
        # Registered kinds (sources' JobKinds, the core's reprocess) and the kinds that
        # drive their own transactions (by default the built-in sources').
        self.kinds: dict[str, JobKind] = {k.kind: k for k in kinds}
        self.drivers: dict[str, JobDriver] = (
            registry.load().job_drivers if drivers is None else {d.kind: d for d in drivers}
        )
        self.all_kinds: tuple[str, ...] = (*self.drivers, *self.kinds)
        self.poll_s = poll_s
        self.chunk = chunk
        self.stale_after = stale_after
        self._wake: asyncio.Event | None = None  # made on the loop that runs the task
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling on the running event loop (not when ``poll_s`` is 0)."""
        if self._task is None and self.poll_s > 0:
            self._stopping = False
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        """Look for a job now (call after committing one, on the server's event loop)."""
        if self._wake is not None:
            self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop after the chunk in flight; a running job goes back to pending."""
        self._stopping = True
        self.wake()
        task, self._task = self._task, None
        if task is None:
            return
        finished, _ = await asyncio.wait({task}, timeout=timeout)
        if not finished:
            # A long final rollup rebuild: its transaction commits or rolls back on
            # its own, and the job resumes once its heartbeat is stale.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._stopping:
            wake.clear()
            try:
                ran = await self.run_next()
            except Exception as exc:  # noqa: BLE001 - the database may be down; retry later
                log.warning("job runner: %s", exc)
                ran = False
            if ran or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_s)

    async def run_next(self) -> bool:
        """Claim one runnable job and run it to its end; False when there was none."""
        # Idle polls only read: a claim is a write transaction (SQLite's write lock).
        if not await self.store.read_primary(jobs.has_runnable, self.all_kinds, self.stale_after):
            return False
        write: Write = self.store.admin_write
        owner = jobs.new_owner()
        job = await write(jobs.claim, self.all_kinds, owner, self.stale_after)
        if job is None:
            return False
        job_id = int(job["id"])
        kind = str(job["kind"])
        try:
            driver = self.drivers.get(kind)
            if driver is not None:
                context = JobContext(self.store, job, owner, self.chunk, self._is_stopping)
                outcome = await driver.run(context)
            else:
                outcome = await self._generic(write, self.kinds[kind], job_id, owner)
            log.info("%s job %d %s", kind, job_id, outcome)
            await write(jobs.prune, kind)  # finished jobs older than a month
        except jobs.JobLost as exc:
            log.warning("%s job %d: %s", kind, job_id, exc)
        except Exception as exc:  # noqa: BLE001 - a job failure must not stop the server
            log.exception("%s job %d failed", kind, job_id)
            message = f"{type(exc).__name__}: {exc}"
            try:
                await write(jobs.fail, job_id, owner, message)
            except Exception as again:  # noqa: BLE001 - it resumes once its heartbeat is stale
                log.warning("%s job %d: could not record the failure: %s", kind, job_id, again)
        return True

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _generic(self, write: Write, kind: JobKind, job_id: int, owner: str) -> str:
        while True:
            if self._stopping:
                await write(jobs.release, job_id, owner)
                return "paused"
            if not await write(run_step, kind, job_id, owner):
                return "done"
