"""Crash regrouping as a durable background job, one short transaction per chunk.

A "never guilty" edit only queues (or restarts) a ``regroup`` job
(:func:`downlink.store.jobs.restart_or_enqueue`, same transaction as the edit). Every
server process runs a :class:`~downlink.pipeline.jobrunner.JobRunner`, whose driver
of this kind is :func:`drive`; one of them claims the job and walks the
backtrace records in id order, :data:`CHUNK` at a time. Each chunk is one write
transaction (:func:`regroup_step`): it regroups the chunk's records with one
executemany ``UPDATE`` and saves the job's cursor, counts and heartbeat. So SQLite's
single writer, and with it ingestion, waits for at most one chunk, and a job whose
process dies resumes from its last committed chunk once its heartbeat is
:data:`~downlink.pipeline.jobrunner.STALE_AFTER_S` old (or at once, after a clean shutdown
put it back to pending).

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

New records are grouped after the ack by the crash consumer
(``downlink.sources.clearlinux.consumers``) with the blacklist of its batch, so they
need no job. The rollups of a group are rebuilt from the records that consumer has
applied (up to its cursor, which the rebuild holds): it adds the later ones itself,
so none is counted twice. One corner: a consumer batch that read the blacklist just
before the edit committed, of records the job walked past already, keeps the old
grouping until the next regroup (the window is one consumer batch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection

from downlink.sources.base import JobContext, JobDriver
from downlink.sources.clearlinux.crashes import count_backtraces, load_blacklist, regroup_chunk
from downlink.sources.clearlinux.rollups import (
    GroupAggregates,
    add_guilty_rows,
    aggregate_guilty_group,
    guilty_ids,
    rebuild_guilty_group,
    reset_guilty_group,
)
from downlink.store import cursors, follow, jobs
from downlink.store.tables import records

KIND = "regroup"
# The consumer that groups new crash records (downlink.sources.clearlinux.consumers).
CRASHES_NAME = "clearlinux_crashes"
KINDS = (KIND,)
CHUNK = 2000
GROUP_PART = 20000  # aggregated rollup rows written per transaction (SQLite)

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
    # Hold the crash consumer (it skips its turn meanwhile) and count what it applied.
    cursor = cursors.lock(conn, CRASHES_NAME, wait=True) or follow.START
    rebuild_guilty_group(conn, guilty_id, follow.up_to(conn, records, cursor))


def handled_id(conn: Connection) -> int:
    """SQLite: the id of the last record the crash consumer applied."""
    return (cursors.read(conn, CRASHES_NAME) or follow.START).id


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
    reset_guilty_group(conn, found, handled_id(conn))


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


async def drive(ctx: JobContext) -> str:
    """Run a claimed regroup job to its end (the job runner's driver of ``regroup``)."""
    store = ctx.store
    write: Write = store.admin_write
    run = RegroupRun.claimed(dict(ctx.job), ctx.owner, ctx.chunk)
    while True:
        if ctx.stopping():
            await write(jobs.release, run.job_id, run.owner)
            return f"paused at record {run.cursor}"
        run = await write(regroup_step, run)
        if run.more:
            continue
        # One transaction per crash group: ingestion waits for one group at most.
        for gid in await store.read_primary(guilty_ids):
            if ctx.stopping():
                break
            if store.is_sqlite:
                # Aggregate without the write lock, then write in parts: ingestion
                # never waits for more than one part.
                last = await store.read_primary(handled_id)
                found = await store.read_primary(aggregate_guilty_group, gid, last)
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
        if ctx.stopping():
            continue  # released at the top of the loop; resumes from its cursor
        if await write(finish_step, run):
            return f"done: {run.changed} of {run.done} records changed group"
        # A restart came in: the next step consumes it and starts over.
        run = replace(run, more=True)


DRIVER = JobDriver(KIND, drive)
