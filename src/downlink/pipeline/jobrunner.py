"""The background job runner every server process runs (started by the app's lifespan).

It claims queued jobs from the ``jobs`` table (:mod:`downlink.store.jobs`) and runs
them: a :class:`~downlink.sources.base.JobKind` one step per write transaction
(:func:`~downlink.pipeline.jobkinds.run_step`: ``reprocess`` replays, consumers'
revisions such as a crash regroup, the sources' own kinds), a
:class:`~downlink.sources.base.JobDriver` (a job that drives its own transactions)
by its ``run``. Its loop is the consumer runner's (:mod:`downlink.pipeline.loop`).
A job whose process dies is taken over once its heartbeat is :data:`STALE_AFTER_S`
old; a clean shutdown puts a running job back to pending at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from downlink.pipeline import reprocess
from downlink.pipeline.consumers import bind
from downlink.pipeline.jobkinds import run_step
from downlink.pipeline.loop import PollingLoop
from downlink.sources import registry
from downlink.sources.base import JobContext, JobDriver, JobKind
from downlink.store import jobs

log = logging.getLogger(__name__)

CHUNK = 2000  # items per step a driver takes by default (JobContext.chunk)
STALE_AFTER_S = 60.0

Write = Callable[..., Awaitable[Any]]


class JobRunner(PollingLoop):
    """Background task of a server process: claims and runs queued jobs.

    A :class:`~downlink.pipeline.loop.PollingLoop`: it looks for a runnable job every
    ``poll_s`` seconds (jobs queued by other processes, jobs of dead processes) and
    at once when :meth:`wake` is called (this process queued one). Database work goes
    through ``store.admin_write``, one short transaction at a time, off the event
    loop. ``kinds`` default to those of the registered sources: ``reprocess``, every
    consumer's revision kind and the sources' own.
    """

    name = "job runner"

    def __init__(
        self,
        store: Any,
        *,
        poll_s: float = 1.0,
        chunk: int = CHUNK,
        stale_after: float = STALE_AFTER_S,
        kinds: Sequence[JobKind] | None = None,
        drivers: Sequence[JobDriver] | None = None,
    ) -> None:
        super().__init__(poll_s=poll_s)
        self.store = store
        sources = registry.load() if kinds is None or drivers is None else None
        if kinds is None:
            assert sources is not None
            kinds = [*reprocess.job_kinds(bind(sources)), *sources.job_kinds.values()]
        # Registered kinds (sources' JobKinds, the core's reprocess and revisions) and
        # the kinds that drive their own transactions (by default the sources').
        self.kinds: dict[str, JobKind] = {k.kind: k for k in kinds}
        self.drivers: dict[str, JobDriver] = (
            sources.job_drivers if drivers is None and sources is not None
            else {d.kind: d for d in drivers or ()}
        )
        self.all_kinds: tuple[str, ...] = (*self.drivers, *self.kinds)
        self.chunk = chunk
        self.stale_after = stale_after

    async def run_once(self) -> bool:
        """Claim one runnable job and run it to its end; False when there was none."""
        return await self.run_next()

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
                context = JobContext(self.store, job, owner, self.chunk, self.stopping)
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

    async def _generic(self, write: Write, kind: JobKind, job_id: int, owner: str) -> str:
        while True:
            if self.stopping():
                await write(jobs.release, job_id, owner)
                return "paused"
            if not await write(run_step, kind, job_id, owner):
                return "done"
