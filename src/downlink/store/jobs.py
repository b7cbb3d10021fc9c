"""Background jobs: a durable queue in the ``jobs`` table, shared by server processes.

A job is a row: ``pending`` until a process claims it, ``running`` while one works on
it in short transactions (saving ``cursor``, ``done`` and ``heartbeat`` with each),
then ``done`` or ``failed`` (with ``message``). Which work a kind means is the
business of the job kinds (``Source.job_kinds``, consumers' revisions, the core's
``reprocess``); this module only moves rows between states, each move one conditional
``UPDATE``:

* :func:`claim` takes a pending job, or a running one whose heartbeat is older than
  ``stale_after`` seconds (its process was killed), and gives it a fresh ``owner``
  token. Two processes claiming the same row both run ``UPDATE … WHERE id = ? AND
  (state = 'pending' OR heartbeat < ?)``; the second one's condition no longer holds
  once the first commits (PostgreSQL re-checks it on the new row version after the
  row lock; SQLite has one writer), so exactly one gets ``rowcount == 1``.
* :func:`progress`, :func:`finish`, :func:`release` and :func:`fail` only match the
  row while it still has the caller's ``owner``: a process whose job was taken over
  (it stalled past ``stale_after``) gets :class:`JobLost` and its chunk rolls back.

Restarting instead of queueing a second job
-------------------------------------------
An edit that makes a job's work stale (a "never guilty" change for a regroup) calls
:func:`restart_or_enqueue` in the edit's own transaction: ``UPDATE jobs SET restart =
true WHERE kind = ? AND state IN ('pending', 'running')``, and if that matched no row,
``INSERT`` a new pending job. The runner consumes the flag at the start of each chunk
(:func:`take_restart`: ``UPDATE … SET restart = false, cursor = 0 WHERE restart``) and
then reloads what the edit changed, and it finishes only with ``UPDATE jobs SET state
= 'done' WHERE id = ? AND restart = false`` (:func:`finish`).

Under PostgreSQL READ COMMITTED no edit can be lost between the two:

* If the edit's ``UPDATE … SET restart = true`` runs first, it holds the job's row
  lock until the edit commits. The finishing ``UPDATE`` waits for that lock, then
  re-evaluates its ``WHERE`` on the committed row, sees ``restart = true``, matches
  nothing, and the runner goes round again with the new data.
* If the finishing ``UPDATE`` runs first, the edit's ``UPDATE`` waits for it, then
  re-evaluates ``state IN ('pending', 'running')`` on the row now ``done``, matches
  nothing, and the edit inserts a new pending job, which the runner (or any process)
  claims after the edit committed, so it sees the edit.
* :func:`take_restart` either waits for the edit's lock and sees ``restart = true``,
  or runs before the edit touched the row and leaves the flag for the next chunk;
  the data the runner reloads after consuming the flag is read by later statements,
  which under READ COMMITTED see everything committed before them, the edit included.

SQLite runs one write transaction at a time (``BEGIN IMMEDIATE``), so the same
statements are trivially serialised there. Two edits racing to insert a job can both
insert one on PostgreSQL; the second job then repeats the first's work, which is
correct, only wasted (:func:`claim` does not start a kind that is already running).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, false, insert, or_, select, true, update

from downlink.store.tables import jobs

PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
ACTIVE = (PENDING, RUNNING)
MESSAGE_MAX = 2000
LANE = "lane"  # the parameter naming a job's lane (see :func:`lane`)


class JobLost(Exception):
    """The job is no longer this claim's (another process took it over, or it ended)."""


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def enqueue(
    conn: Connection, kind: str, params: dict[str, Any] | None = None, *, now: float | None = None
) -> int:
    """Add a pending job of ``kind``; return its id."""
    result = conn.execute(
        insert(jobs).values(
            kind=kind,
            state=PENDING,
            restart=False,
            params=params,
            cursor=0,
            done=0,
            total=0,
            changed=0,
            created_at=_now(now),
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def restart_or_enqueue(
    conn: Connection,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    merge: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
    now: float | None = None,
) -> int:
    """Make the pending or running job of ``kind`` start over, or add one (with
    ``params``); return its id.

    ``merge(old, new)``: the restarted job's parameters from its own and ``params``
    (its row is locked first, so two edits cannot lose each other's part).
    Call it in the same transaction as the edit that made the job's work stale (see
    the module docstring for why no edit can be missed).
    """
    if merge is not None:
        return _restart_merging(conn, kind, params, merge, now)
    result = conn.execute(
        update(jobs).where(jobs.c.kind == kind, jobs.c.state.in_(ACTIVE)).values(restart=True)
    )
    if not result.rowcount:
        return enqueue(conn, kind, params, now=now)
    found = conn.execute(
        select(jobs.c.id)
        .where(jobs.c.kind == kind, jobs.c.state.in_(ACTIVE))
        .order_by(jobs.c.id)
        .limit(1)
    ).scalar_one()
    return int(found)


def _restart_merging(
    conn: Connection,
    kind: str,
    params: dict[str, Any] | None,
    merge: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    now: float | None,
) -> int:
    # The row lock orders this edit with the job's finishing UPDATE and with other
    # edits: FOR UPDATE re-reads the row once the lock is free, so a job done
    # meanwhile is no longer active (a new one is queued) and the parameters merged
    # are the latest.
    stmt = (
        select(jobs.c.id, jobs.c.params)
        .where(jobs.c.kind == kind, jobs.c.state.in_(ACTIVE))
        .order_by(jobs.c.id)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    found = conn.execute(stmt).all()
    if not found:
        return enqueue(conn, kind, params, now=now)
    for job_id, old in found:
        merged = merge(dict(old or {}), dict(params or {}))
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(restart=True, params=merged))
    return int(found[0][0])


def new_owner() -> str:
    """Return a fresh claim token."""
    return secrets.token_hex(16)


def _runnable(at: float, stale_after: float) -> Any:
    stale = or_(jobs.c.heartbeat.is_(None), jobs.c.heartbeat < at - stale_after)
    return or_(jobs.c.state == PENDING, and_(jobs.c.state == RUNNING, stale))


def has_runnable(
    conn: Connection, kinds: tuple[str, ...], stale_after: float, now: float | None = None
) -> bool:
    """Return whether a job of ``kinds`` may be claimable (a read, for idle polling)."""
    found = conn.execute(
        select(jobs.c.id).where(jobs.c.kind.in_(kinds), _runnable(_now(now), stale_after)).limit(1)
    ).first()
    return found is not None


def claim(
    conn: Connection,
    kinds: tuple[str, ...],
    owner: str,
    stale_after: float,
    now: float | None = None,
    *,
    job_id: int | None = None,
) -> dict[str, Any] | None:
    """Claim the oldest runnable job of one of ``kinds`` for ``owner``; return its row.

    Runnable: pending, or running with a heartbeat older than ``stale_after`` seconds
    (its process died; the job resumes from its cursor). A lane (:func:`lane`: the
    kind, unless the job names another) with a job running under a fresh heartbeat
    is left alone, so one lane runs one job at a time.
    ``job_id`` claims that job only (a command resuming the job it queued).
    """
    at = _now(now)
    runnable = _runnable(at, stale_after)
    busy = {
        lane(str(k), p)
        for k, p in conn.execute(
            select(jobs.c.kind, jobs.c.params).where(
                jobs.c.state == RUNNING, jobs.c.heartbeat >= at - stale_after
            )
        )
    }
    query = select(jobs.c.id, jobs.c.kind, jobs.c.params).where(jobs.c.kind.in_(kinds), runnable)
    if job_id is not None:
        query = query.where(jobs.c.id == job_id)
    candidates = conn.execute(query.order_by(jobs.c.id).limit(20)).all()
    for job_id, kind, params in candidates:
        if lane(str(kind), params) in busy:
            continue
        claimed = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, runnable)
            .values(state=RUNNING, owner=owner, heartbeat=at, message=None)
        )
        if claimed.rowcount == 1:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.started_at.is_(None))
                .values(started_at=at)
            )
            return get(conn, int(job_id))
    return None


def lane(kind: str, params: Any) -> str:
    """The job's lane: jobs of one lane never run at the same time (:func:`claim`).

    ``params["lane"]`` when set (every job replaying or revising one consumer shares
    ``consumer:<name>``, whatever its kind), else the kind.
    """
    if isinstance(params, dict) and isinstance(params.get(LANE), str):
        return str(params[LANE])
    return kind


def get(conn: Connection, job_id: int) -> dict[str, Any] | None:
    """Return one job's row as a dict."""
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return None if row is None else dict(row)


def _mine(job_id: int, owner: str) -> Any:
    return and_(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.state == RUNNING)


def take_restart(conn: Connection, job_id: int, owner: str) -> bool:
    """Consume the job's restart flag (cursor and counts back to 0); True if it was set."""
    result = conn.execute(
        update(jobs)
        .where(_mine(job_id, owner), jobs.c.restart == true())
        .values(restart=False, cursor=0, done=0, changed=0)
    )
    return bool(result.rowcount)


def progress(
    conn: Connection,
    job_id: int,
    owner: str,
    *,
    cursor: int,
    done: int,
    changed: int,
    total: int | None = None,
    params: dict[str, Any] | None = None,
    now: float | None = None,
) -> None:
    """Save the job's cursor and counts with a heartbeat; :class:`JobLost` if not ours.

    ``params`` replaces the job's parameters (state a job kind keeps between chunks).
    """
    values: dict[str, Any] = {
        "cursor": cursor,
        "done": done,
        "changed": changed,
        "heartbeat": _now(now),
    }
    if total is not None:
        values["total"] = total
    if params is not None:
        values["params"] = params
    result = conn.execute(update(jobs).where(_mine(job_id, owner)).values(**values))
    if result.rowcount != 1:
        raise JobLost(f"job {job_id} is no longer this process's")


def restart_pending(conn: Connection, job_id: int) -> bool:
    """Return whether the job has been asked to start over."""
    flag = conn.execute(select(jobs.c.restart).where(jobs.c.id == job_id)).scalar_one_or_none()
    return bool(flag)


def finish(conn: Connection, job_id: int, owner: str, *, now: float | None = None) -> bool:
    """Mark the job done unless it must restart; False when it must go round again.

    :class:`JobLost` when the job is no longer this claim's.
    """
    at = _now(now)
    result = conn.execute(
        update(jobs)
        .where(_mine(job_id, owner), jobs.c.restart == false())
        .values(state=DONE, finished_at=at, heartbeat=at, owner=None)
    )
    if result.rowcount == 1:
        return True
    if restart_pending(conn, job_id) and _is_mine(conn, job_id, owner):
        return False
    raise JobLost(f"job {job_id} is no longer this process's")


def _is_mine(conn: Connection, job_id: int, owner: str) -> bool:
    found = conn.execute(select(jobs.c.id).where(_mine(job_id, owner))).first()
    return found is not None


def release(conn: Connection, job_id: int, owner: str) -> bool:
    """Put a running job back to pending (this process stops); it resumes from its cursor."""
    result = conn.execute(
        update(jobs).where(_mine(job_id, owner)).values(state=PENDING, owner=None)
    )
    return bool(result.rowcount)


def fail(
    conn: Connection, job_id: int, owner: str, message: str, *, now: float | None = None
) -> bool:
    """Mark the job failed with ``message``; False if it was no longer this claim's."""
    at = _now(now)
    result = conn.execute(
        update(jobs)
        .where(_mine(job_id, owner))
        .values(
            state=FAILED, finished_at=at, heartbeat=at, owner=None, message=message[:MESSAGE_MAX]
        )
    )
    return bool(result.rowcount)


def status(conn: Connection, kind: str) -> dict[str, Any] | None:
    """Return the status of ``kind``'s current job (the oldest active, else the newest).

    ``None`` when no job of that kind was ever queued.
    """
    row = (
        conn.execute(
            select(jobs)
            .where(jobs.c.kind == kind, jobs.c.state.in_(ACTIVE))
            .order_by(jobs.c.id)
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        row = (
            conn.execute(
                select(jobs).where(jobs.c.kind == kind).order_by(jobs.c.id.desc()).limit(1)
            )
            .mappings()
            .first()
        )
    return None if row is None else as_status(dict(row))


def as_status(row: dict[str, Any]) -> dict[str, Any]:
    """Return the public view of a job row (no claim token), with a percentage."""
    total = int(row["total"] or 0)
    done = int(row["done"] or 0)
    percent = min(100, done * 100 // total) if total else (100 if row["state"] == DONE else 0)
    return {
        "id": int(row["id"]),
        "kind": row["kind"],
        "state": row["state"],
        "restart": bool(row["restart"]),
        "done": done,
        "total": total,
        "changed": int(row["changed"] or 0),
        "percent": percent,
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "heartbeat": row["heartbeat"],
        "message": row["message"],
    }


KEEP_S = 30 * 86400.0


def prune(conn: Connection, kind: str, *, keep_s: float = KEEP_S, now: float | None = None) -> int:
    """Delete ``kind``'s finished jobs older than ``keep_s``; return how many.

    The newest job of the kind always stays: :func:`status` shows it.
    """
    newest = select(jobs.c.id).where(jobs.c.kind == kind).order_by(jobs.c.id.desc()).limit(1)
    result = conn.execute(
        jobs.delete().where(
            jobs.c.kind == kind,
            jobs.c.state.in_((DONE, FAILED)),
            jobs.c.finished_at < _now(now) - keep_s,
            jobs.c.id != newest.scalar_subquery(),
        )
    )
    return int(result.rowcount or 0)
