"""Reprocessing: replay a range of committed rows through a consumer, as a job.

``downlink reprocess --source S --since D1 --until D2 [--consumer C]`` queues one
``reprocess`` job per consumer (:func:`plan`); the command runs it itself with a
progress bar, or a server's job runner does (``/consumers`` shows it). Each step is
one short transaction, so a job whose process dies resumes from its cursor.

The first step (:func:`step` with no ``boundary`` yet) locks the consumer's cursor
row, calls ``consumer.reset(conn, since, until)`` to forget what it derived from the
range, and records the consumer's cursor as the job's ``boundary``, all in one
transaction. The rows of the range up to the boundary are exactly those the consumer
had applied, so the job replays them (chunk by chunk, by id) through ``handle``;
rows after the boundary were never applied, and the live consumer applies them as
usual. Derived data after the job is what applying every row once gives: running it
twice gives identical data. A consumer without ``reset`` is idempotent (its
``handle`` upserts) and is simply replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Connection, select

from downlink.pipeline.consumers import Bound, records_of
from downlink.sources.base import JobKind, JobProgress
from downlink.store import cursors, follow, jobs
from downlink.store.tables import jobs as jobs_table

KIND = "reprocess"


def day_start(day: date) -> float:
    """Epoch seconds of a UTC day's midnight."""
    return datetime.combine(day, time(0), tzinfo=UTC).timestamp()


def plan(source: str, consumer: str, first: date, last: date) -> dict[str, Any]:
    """The parameters of a job replaying UTC days ``first`` to ``last`` (included)."""
    return {
        "source": source,
        "consumer": consumer,
        "since": day_start(first),
        "until": day_start(last) + 86400.0,
        "since_date": first.isoformat(),
        "until_date": last.isoformat(),
    }


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("source", "consumer", "since", "until")
    return all(a.get(k) == b.get(k) for k in keys)


def find_or_enqueue(conn: Connection, params: dict[str, Any]) -> int:
    """The unfinished job with these parameters (to resume it), or a new one; its id."""
    rows = conn.execute(
        select(jobs_table.c.id, jobs_table.c.params)
        .where(jobs_table.c.kind == KIND, jobs_table.c.state.in_(jobs.ACTIVE))
        .order_by(jobs_table.c.id)
    ).all()
    for job_id, found in rows:
        if isinstance(found, Mapping) and _same(found, params):
            return int(job_id)
    return jobs.enqueue(conn, KIND, params)


def count(conn: Connection, bound: Bound, since: float, until: float) -> int:
    """Rows of the consumer's table received in ``[since, until)`` (a dry run)."""
    return follow.count_range(conn, bound.table, bound.consumer.ts_column, since, until)


def step(
    conn: Connection, job: Mapping[str, Any], bounds: Mapping[str, Bound]
) -> JobProgress | None:
    """One transaction of a reprocess job: the reset, or one chunk of the replay."""
    params = dict(job["params"] or {})
    bound = bounds.get(str(params.get("consumer")))
    if bound is None:
        raise LookupError(f"no consumer {params.get('consumer')!r} in this server's sources")
    since, until = float(params["since"]), float(params["until"])
    consumer = bound.consumer
    if "boundary" not in params:
        cursors.ensure(conn, bound.name, consumer.follows)
        cursor = cursors.lock(conn, bound.name, wait=True) or follow.START
        if consumer.reset is not None:
            consumer.reset(conn, since, until)
        params["boundary"] = [cursor.txid, cursor.id]
        total = follow.count_range(conn, bound.table, consumer.ts_column, since, until, cursor)
        return JobProgress(cursor=0, done=0, total=total, params=params)
    boundary = follow.Cursor(*(int(x) for x in params["boundary"]))
    rows = follow.read_range(
        conn, bound.table, consumer.ts_column, since, until, boundary,
        int(job["cursor"]), consumer.batch_max,
    )
    if not rows:
        return None
    consumer.handle(conn, records_of(bound, rows))
    return JobProgress(cursor=int(rows[-1]["id"]), done=int(job["done"]) + len(rows))


def job_kind(bounds: Sequence[Bound]) -> JobKind:
    """The ``reprocess`` job kind over these consumers."""
    by_name = {b.name: b for b in bounds}

    def run(conn: Connection, job: Mapping[str, Any]) -> JobProgress | None:
        return step(conn, job, by_name)

    return JobKind(KIND, run)


def recent(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest reprocess jobs, with their parameters (for the status page)."""
    rows = conn.execute(
        select(jobs_table)
        .where(jobs_table.c.kind == KIND)
        .order_by(jobs_table.c.id.desc())
        .limit(limit)
    ).mappings()
    out = []
    for row in rows:
        entry = jobs.as_status(dict(row))
        params = dict(row["params"] or {})
        params.pop("boundary", None)
        entry["params"] = params
        out.append(entry)
    return out
