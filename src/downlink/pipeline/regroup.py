"""Crash regrouping as a durable background job, one short transaction per chunk.

A "never guilty" edit only queues (or restarts) a ``regroup`` job
(:func:`downlink.store.jobs.restart_or_enqueue`, same transaction as the edit). Every
server process runs a :class:`JobRunner`; one of them claims the job and walks the
backtrace records in id order, :data:`CHUNK` at a time. Each chunk is one write
transaction (:func:`regroup_step`): it regroups the chunk's records with one
executemany ``UPDATE`` and saves the job's cursor, counts and heartbeat. So SQLite's
single writer, and with it ingestion, waits for at most one chunk, and a job whose
process dies resumes from its last committed chunk once its heartbeat is
:data:`STALE_AFTER_S` old (or at once, after a clean shutdown put it back to pending).

Each chunk first consumes the job's ``restart`` flag, set by edits made while the job
runs: then it starts over from the first record with the blacklist reloaded. When no
record is left, the crash rollups are rebuilt one group per transaction
(:func:`rebuild_group_step`; on SQLite the group's rows are aggregated on a read
connection first and written in parts of :data:`GROUP_PART` rows by
:func:`reset_group_step` and :func:`add_rows_step`, so the single write lock, and
with it ingestion, is held for a fraction of a second at a time), and
:func:`finish_step` marks the job done, unless a restart came in meanwhile (then it
goes round again);
:mod:`downlink.store.jobs` explains why no edit is missed under concurrency.

New records are grouped at ingest with the blacklist of their batch
(:class:`~downlink.pipeline.crashes.GuiltyProcessor`), so they need no job. One corner
on PostgreSQL: a batch that read the blacklist just before the edit committed, and
committed just after the job walked past its ids, keeps the old grouping until the
next regroup (the window is one writer batch, a few milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection

from downlink.pipeline.crashes import count_backtraces, load_blacklist, regroup_chunk
from downlink.pipeline.jobkinds import run_step
from downlink.sources.base import JobKind
from downlink.store import jobs
from downlink.store.rollups import (
    GroupAggregates,
    add_guilty_rows,
    aggregate_guilty_group,
    guilty_ids,
    rebuild_guilty_group,
    reset_guilty_group,
)

log = logging.getLogger(__name__)

KIND = "regroup"
KINDS = (KIND,)
CHUNK = 2000
GROUP_PART = 20000  # aggregated rollup rows written per transaction (SQLite)
STALE_AFTER_S = 60.0

Write = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class RegroupRun:
    """Where one claim of a regroup job stands between two chunk transactions.

    Each step returns a new value, so nothing changes unless its transaction commits.
    """

    job_id: int
    owner: str
    cursor: int = 0
    done: int = 0
    changed: int = 0
    chunk: int = CHUNK
    more: bool = True
    # None until a step loads it (first chunk of a claim, and after each restart).
    blacklist: frozenset[tuple[str, str]] | None = None
    ids: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def claimed(cls, job: dict[str, Any], owner: str, chunk: int = CHUNK) -> RegroupRun:
        """Start from a freshly claimed job row (resuming at its cursor)."""
        return cls(
            job_id=int(job["id"]),
            owner=owner,
            cursor=int(job["cursor"]),
            done=int(job["done"]),
            changed=int(job["changed"]),
            chunk=chunk,
        )


def regroup_step(conn: Connection, run: RegroupRun) -> RegroupRun:
    """Regroup the next chunk and save the job's progress, in the caller's transaction.

    Raises :class:`~downlink.store.jobs.JobLost` (rolling the chunk back) when the job
    is no longer this claim's.
    """
    cursor, done, changed, blacklist = run.cursor, run.done, run.changed, run.blacklist
    if jobs.take_restart(conn, run.job_id, run.owner):
        cursor = done = changed = 0
        blacklist = None
    total: int | None = None
    if blacklist is None:
        blacklist = frozenset(load_blacklist(conn))
        total = count_backtraces(conn)
    ids = dict(run.ids)  # guilty rows created here exist only if this commits
    last, seen, n = regroup_chunk(conn, cursor, run.chunk, set(blacklist), ids)
    done, changed = done + seen, changed + n
    if total is not None:
        total = max(total, done)
    jobs.progress(conn, run.job_id, run.owner, cursor=last, done=done, changed=changed, total=total)
    return replace(
        run,
        cursor=last,
        done=done,
        changed=changed,
        more=seen >= run.chunk,
        blacklist=blacklist,
        ids=ids,
    )


def rebuild_group_step(conn: Connection, run: RegroupRun, guilty_id: int) -> None:
    """Rebuild one crash group's rollups and refresh the job's heartbeat.

    Raises :class:`~downlink.store.jobs.JobLost` (rolling back) when the job is no
    longer this claim's.
    """
    _heartbeat(conn, run)
    rebuild_guilty_group(conn, guilty_id)


def _heartbeat(conn: Connection, run: RegroupRun) -> None:
    jobs.progress(
        conn, run.job_id, run.owner, cursor=run.cursor, done=run.done, changed=run.changed
    )


def reset_group_step(conn: Connection, run: RegroupRun, found: GroupAggregates) -> None:
    """Empty one group's rollups (adding its records newer than ``found``); heartbeat.

    SQLite's variant of :func:`rebuild_group_step`, with :func:`add_rows_step`: the
    aggregation ran on a read connection, and the rows are written in parts, so the
    single write lock is held for a fraction of a second at a time.
    """
    _heartbeat(conn, run)
    reset_guilty_group(conn, found)


def add_rows_step(
    conn: Connection,
    run: RegroupRun,
    per_build: list[tuple[Any, ...]],
    per_machine: list[tuple[Any, ...]],
) -> None:
    """Add one part of a group's aggregated rows; heartbeat."""
    _heartbeat(conn, run)
    add_guilty_rows(conn, per_build, per_machine)


def finish_step(conn: Connection, run: RegroupRun) -> bool:
    """Mark the job done; False if an edit asked for a restart (then it starts over).

    The crash rollups were rebuilt group by group before (:func:`rebuild_group_step`);
    a restart requested meanwhile makes the job regroup and rebuild again.
    """
    if jobs.restart_pending(conn, run.job_id):
        return False
    return jobs.finish(conn, run.job_id, run.owner)


def rebuild_all(conn: Connection, run: RegroupRun) -> bool:
    """Rebuild every group's rollups and finish, in one transaction (tests, small data)."""
    for gid in guilty_ids(conn):
        rebuild_group_step(conn, run, gid)
    return finish_step(conn, run)


def request_regroup(conn: Connection) -> int:
    """Restart the pending or running regroup job, or queue one; return its id.

    Call it in the transaction that edits the blacklist.
    """
    return jobs.restart_or_enqueue(conn, KIND)


def regroup_status(conn: Connection) -> dict[str, Any] | None:
    """Return the status of the current (or last) regroup job, or None."""
    return jobs.status(conn, KIND)


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
    ) -> None:
        self.store = store
        # Registered kinds (sources' JobKinds, the core's reprocess) beside the regroup.
        self.kinds: dict[str, JobKind] = {k.kind: k for k in kinds}
        self.all_kinds: tuple[str, ...] = (KIND, *self.kinds)
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
            if kind == KIND:
                outcome = await self._regroup(write, RegroupRun.claimed(job, owner, self.chunk))
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
            if self._stopping:
                await write(jobs.release, job_id, owner)
                return "paused"
            if not await write(run_step, kind, job_id, owner):
                return "done"

    async def _regroup(self, write: Write, run: RegroupRun) -> str:
        while True:
            if self._stopping:
                await write(jobs.release, run.job_id, run.owner)
                return f"paused at record {run.cursor}"
            run = await write(regroup_step, run)
            if run.more:
                continue
            # One transaction per crash group: ingestion waits for one group at most.
            for gid in await self.store.read_primary(guilty_ids):
                if self._stopping:
                    break
                if self.store.is_sqlite:
                    # Aggregate without the write lock, then write in parts: ingestion
                    # never waits for more than one part.
                    found = await self.store.read_primary(aggregate_guilty_group, gid)
                    await write(reset_group_step, run, found)
                    size = max(len(found.per_build), len(found.per_machine))
                    for start in range(0, size, GROUP_PART):
                        end = start + GROUP_PART
                        await write(
                            add_rows_step,
                            run,
                            found.per_build[start:end],
                            found.per_machine[start:end],
                        )
                else:
                    await write(rebuild_group_step, run, gid)
            if self._stopping:
                continue  # released at the top of the loop; resumes from its cursor
            if await write(finish_step, run):
                return f"done: {run.changed} of {run.done} records changed group"
            # A restart came in: the next step consumes it and starts over.
            run = replace(run, more=True)
