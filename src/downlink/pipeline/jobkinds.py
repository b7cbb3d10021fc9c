"""Run one step of a job of a registered kind (``JobKind``), with its progress.

The job runner (:class:`~downlink.pipeline.jobrunner.JobRunner`) and ``downlink
reprocess`` call :func:`run_step` in one write transaction per step: the kind's work
and the job's cursor, counts and heartbeat commit together, so a job resumes exactly
where its last committed step left it. A job whose ``restart`` flag an edit set
(``store.jobs.restart_or_enqueue``) starts over: the step consumes the flag, and the
kind's step sees the cursor and counts back at 0.
"""

from __future__ import annotations

from sqlalchemy import Connection

from downlink.sources.base import JobKind, JobProgress
from downlink.store import jobs


def run_step(conn: Connection, kind: JobKind, job_id: int, owner: str) -> bool:
    """Do the job's next step; False when it finished (then it is marked done, unless
    its ``restart`` flag is set: then it goes on).

    :class:`~downlink.store.jobs.JobLost` (rolling back) when the job is no longer
    this claim's.
    """
    job = jobs.get(conn, job_id)
    if job is None or job["owner"] != owner or job["state"] != jobs.RUNNING:
        raise jobs.JobLost(f"job {job_id} is no longer this process's")
    if jobs.take_restart(conn, job_id, owner):
        # An edit made the work done so far stale: start over from the first item.
        job = jobs.get(conn, job_id)
        assert job is not None
    result = kind.step(conn, job)
    if result is None:
        # False when an edit asked the job to start over meanwhile: its next step
        # consumes the flag (jobs.take_restart) and begins again.
        return not jobs.finish(conn, job_id, owner)
    if not isinstance(result, JobProgress):
        result = JobProgress(cursor=int(result), done=int(job["done"]))
    jobs.progress(
        conn,
        job_id,
        owner,
        cursor=result.cursor,
        done=result.done,
        changed=int(job["changed"]) if result.changed is None else result.changed,
        total=result.total,
        params=None if result.params is None else dict(result.params),
    )
    return True
