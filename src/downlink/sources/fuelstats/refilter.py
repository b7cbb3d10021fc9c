"""Re-applying the filtering rules to stored installations: the ``fuel_refilter`` job.

Changing the rules file changes what new posts get; this job brings the stored
installations in line. It is queued with the rules it applies (their JSON, in the job's
params, so every step and every process uses the same rules) and walks the
installations by id, :data:`CHUNK` at a time, one short transaction per step on the
core's job runner, counting the installations whose filter status changed. Queuing it
while one is active restarts that one with the new rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, false, func, select, update

from downlink.sources.base import JobKind, JobProgress
from downlink.sources.fuelstats import counts
from downlink.sources.fuelstats.filtering import index_rules, is_filtered
from downlink.sources.fuelstats.tables import counts as counts_table
from downlink.sources.fuelstats.tables import installations
from downlink.store import jobs
from downlink.store.tables import jobs as jobs_table

KIND = "fuel_refilter"
CHUNK = 500


def request(conn: Connection, raw_rules: Any) -> int:
    """Queue a refilter with ``raw_rules`` (restarting an active one); return its id."""
    index_rules(raw_rules)  # refuse rules that cannot be read before queueing them
    job_id = jobs.restart_or_enqueue(conn, KIND)
    total = conn.execute(select(func.count()).select_from(installations)).scalar_one()
    conn.execute(
        update(jobs_table)
        .where(jobs_table.c.id == job_id)
        .values(params={"rules": raw_rules, "changed": 0}, total=int(total))
    )
    return job_id


def status(conn: Connection) -> dict[str, Any] | None:
    """The refilter job's status, with the installations it changed."""
    found = jobs.status(conn, KIND)
    if found is None:
        return None
    row = jobs.get(conn, int(found["id"]))
    found["changed"] = int(((row or {}).get("params") or {}).get("changed") or 0)
    return found


def step(conn: Connection, job: Mapping[str, Any]) -> JobProgress | None:
    """Re-filter the installations after the job's cursor; its progress, None at the end.

    The count of installations whose flag changed is kept in the job's params
    (``changed``); a restart (new rules) starts it again from 0.
    """
    scope = counts.lock(conn)  # first: see counts.py
    params = dict(job.get("params") or {})
    rules = index_rules(params.get("rules"))
    cursor = int(job.get("cursor") or 0)
    if cursor == 0:
        params["changed"] = 0
    rows = conn.execute(
        select(installations)
        .where(installations.c.id > cursor)
        .order_by(installations.c.id)
        .limit(CHUNK)
    ).mappings().all()
    if not rows:
        return None
    changed = [
        row for row in rows
        if is_filtered(row["structure"] if isinstance(row["structure"], dict) else {}, rules)
        != bool(row["is_filtered"])
    ]
    delta: counts.Delta = {}
    for row in changed:
        flag = not row["is_filtered"]
        # Shown before and hidden now, or the other way: its whole contribution moves
        # (unless a recount has yet to reach it: it will count it with its new flag).
        shown = row if flag else {**row, "is_filtered": False}
        counts.installation_delta(conn, delta, shown, sign=-1 if flag else 1, with_logs=True,
                                  scope=scope)
        conn.execute(update(installations).where(installations.c.id == row["id"])
                     .values(is_filtered=flag))
    counts.apply(conn, delta)
    params["changed"] = int(params.get("changed") or 0) + len(changed)
    return JobProgress(
        cursor=int(rows[-1]["id"]), done=int(job.get("done") or 0) + len(rows), params=params
    )


JOB = JobKind(kind=KIND, step=step)


RECOUNT = counts.RECOUNT


def recount_step(conn: Connection, job: Mapping[str, Any]) -> JobProgress | None:
    """Recompute ``fuel_counts``: clear them, then add installations chunk by chunk.

    Queued at server start while the counts are empty and an installation is shown
    (installations stored before the counts existed, or loaded in bulk). Its cursor,
    committed with each step, is what the other writers of counts read to leave the
    installations after it to this job ("While a recount runs" in ``counts.py``).
    """
    counts.lock(conn)  # the scope is the other writers'; this job counts from the rows
    cursor = int(job.get("cursor") or 0)
    if cursor == 0:
        counts.clear(conn)
    after = counts.rebuild_chunk(conn, cursor, CHUNK)
    if after is None:
        return None
    return JobProgress(cursor=after, done=int(job.get("done") or 0) + CHUNK)


def needs_recount(conn: Connection) -> bool:
    """No counts while an installation is shown, and no recount queued."""
    if conn.execute(select(counts_table.c.n).limit(1)).first() is not None:
        return False
    shown = select(installations.c.id).where(installations.c.is_filtered == false()).limit(1)
    if conn.execute(shown).first() is None:
        return False
    found = jobs.status(conn, RECOUNT)
    return found is None or found.get("state") not in jobs.ACTIVE


RECOUNT_JOB = JobKind(kind=RECOUNT, step=recount_step)
