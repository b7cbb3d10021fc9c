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

Filters (``Consumer.filters``, ``--ccs IT,DE``) narrow a job to the matching rows:
the reset is ``consumer.reset_matching(conn, since, until, values)`` and the replay
walks the matching rows only.

**Revising in place** (``Consumer.revision``, mode ``revise``): no reset. Each step
holds the consumer's cursor row (the live consumer waits for one step at most),
reads the next rows it has applied (up to its cursor, by id, matching
``revision.where``; as many as a step's time budget allows:
:mod:`downlink.pipeline.stepsize`) and hands them to ``revision.apply``, which swaps their old
derived rows for new ones in that transaction. Derived data is complete at every
moment, which a reset-and-replay cannot give (the crash dashboards would be empty
for minutes at 10M records). A source queues such a job itself with
:func:`request_revision` (a crash regroup after a "never guilty" edit): an
edit while it runs sets its ``restart`` flag, and the next step starts over from the
first row. Every job replaying or revising one consumer runs in that consumer's
lane (``store.jobs.lane``), so two never interleave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, select

from downlink.pipeline import stepsize
from downlink.pipeline.consumers import Bound, records_of
from downlink.pipeline.stepsize import StepSizer
from downlink.sources.base import Consumer, JobKind, JobProgress
from downlink.store import cursors, follow, jobs
from downlink.store.tables import jobs as jobs_table

KIND = "reprocess"
REVISE = "revise"  # params["mode"] of a job revising in place
FILTERS = "filters"  # params: {filter name: [values]}


def day_start(day: date) -> float:
    """Epoch seconds of a UTC day's midnight."""
    return datetime.combine(day, time(0), tzinfo=UTC).timestamp()


def lane_of(consumer: str) -> str:
    """The lane of every job replaying or revising ``consumer`` (``store.jobs.lane``)."""
    return f"consumer:{consumer}"


def plan(
    source: str,
    consumer: str,
    first: date,
    last: date,
    filters: Mapping[str, Sequence[str]] | None = None,
    *,
    revise: bool = False,
) -> dict[str, Any]:
    """The parameters of a job replaying UTC days ``first`` to ``last`` (included),
    limited to the rows matching ``filters`` (``{name: values}``); ``revise``: in
    place."""
    params: dict[str, Any] = {
        "source": source,
        "consumer": consumer,
        "since": day_start(first),
        "until": day_start(last) + 86400.0,
        "since_date": first.isoformat(),
        "until_date": last.isoformat(),
        jobs.LANE: lane_of(consumer),
    }
    chosen = {k: sorted(v) for k, v in (filters or {}).items() if v}
    if chosen:
        params[FILTERS] = chosen
    if revise:
        params["mode"] = REVISE
    return params


def revision_params(source: str, consumer: str) -> dict[str, Any]:
    """The parameters of a job revising every row ``consumer`` has applied."""
    return {"source": source, "consumer": consumer, "mode": REVISE,
            jobs.LANE: lane_of(consumer)}


def request_revision(
    conn: Connection, source: str, consumer: Consumer, narrow: Sequence[Any] | None = None
) -> int:
    """Restart the pending or running revision job of ``consumer``, or queue one; its id.

    Call it in the transaction of the edit that changes what the consumer derives
    (a "never guilty" edit). The job revises every row the consumer has applied, or
    with ``narrow`` (items for ``Revision.narrow``) only the rows they select; a job
    already queued or running keeps the union of the edits' items (every row if one
    of them named none), and after a failed job (rows left unrevised) every row.
    """
    revision = consumer.revision
    if revision is None or revision.kind is None:
        raise ValueError(f"consumer {consumer.name!r} declares no revision job kind")
    params = revision_params(source, consumer.name)
    if narrow is not None and revision.narrow is not None:
        # The current job, else the last one: failed, it left rows unrevised.
        last = jobs.status(conn, revision.kind)
        if last is None or last["state"] != jobs.FAILED:
            params[NARROW] = _union([], narrow)
    return jobs.restart_or_enqueue(conn, revision.kind, params, merge=_merge)


NARROW = "narrow"  # params: the items an edit named (Revision.narrow)


def _union(old: Sequence[Any], new: Sequence[Any]) -> list[Any]:
    by_text = {orjson.dumps(x, option=orjson.OPT_SORT_KEYS): x for x in [*old, *new]}
    return [by_text[k] for k in sorted(by_text)]


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A restarted revision's parameters: the union of the edits' items, or none."""
    merged = {**old, **{k: v for k, v in new.items() if k != NARROW}}
    if NARROW in old and NARROW in new:
        merged[NARROW] = _union(old[NARROW], new[NARROW])
    else:
        merged.pop(NARROW, None)
    return merged


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("source", "consumer", "since", "until", FILTERS, "mode")
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


def _filtered(bound: Bound, values: Mapping[str, Sequence[str]]) -> list[ColumnElement[bool]]:
    by_name = {f.name: f for f in bound.consumer.filters}
    where = []
    for name, chosen in values.items():
        found = by_name.get(name)
        if found is None:
            raise LookupError(f"consumer {bound.name!r} has no filter {name!r}")
        where.append(found.where(bound.table, tuple(chosen)))
    return where


def _values(params: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    found = params.get(FILTERS) or {}
    return {str(k): tuple(str(x) for x in v) for k, v in dict(found).items()}


def _range(params: Mapping[str, Any]) -> tuple[float | None, float | None]:
    since, until = params.get("since"), params.get("until")
    return (None if since is None else float(since), None if until is None else float(until))


def count(
    conn: Connection,
    bound: Bound,
    since: float,
    until: float,
    filters: Mapping[str, Sequence[str]] | None = None,
    *,
    revise: bool = False,
) -> int:
    """Rows of the consumer's table received in ``[since, until)`` matching
    ``filters`` (and, ``revise``, the rows its revision walks): a dry run."""
    where = _filtered(bound, filters or {})
    revision = bound.consumer.revision
    if revise and revision is not None and revision.where is not None:
        where.append(revision.where(bound.table))
    return follow.count_range(
        conn, bound.table, bound.consumer.ts_column, since, until, where=where
    )


def step(
    conn: Connection,
    job: Mapping[str, Any],
    bounds: Mapping[str, Bound],
    sizers: Mapping[str, StepSizer] | None = None,
) -> JobProgress | None:
    """One transaction of a reprocess job: the reset, or one chunk of the replay
    (revising in place: a chunk sized by the consumer's ``sizers`` entry, if any)."""
    params = dict(job["params"] or {})
    bound = bounds.get(str(params.get("consumer")))
    if bound is None:
        raise LookupError(f"no consumer {params.get('consumer')!r} in this server's sources")
    if params.get("mode") == REVISE:
        return revise_step(conn, job, bound, (sizers or {}).get(bound.name))
    since, until = float(params["since"]), float(params["until"])
    consumer = bound.consumer
    values = _values(params)
    where = _filtered(bound, values)
    if "boundary" not in params:
        cursors.ensure(conn, bound.name, consumer.follows)
        cursor = cursors.lock(conn, bound.name, wait=True) or follow.START
        if values and consumer.reset is not None:
            if consumer.reset_matching is None:  # bind() refuses such a consumer
                raise LookupError(f"consumer {bound.name!r} cannot reset filtered rows")
            consumer.reset_matching(conn, since, until, values)
        elif consumer.reset is not None:
            consumer.reset(conn, since, until)
        params["boundary"] = [cursor.txid, cursor.id]
        total = follow.count_range(
            conn, bound.table, consumer.ts_column, since, until, cursor, where
        )
        return JobProgress(cursor=0, done=0, total=total, params=params)
    boundary = follow.Cursor(*(int(x) for x in params["boundary"]))
    rows = follow.read_range(
        conn, bound.table, consumer.ts_column, since, until, boundary,
        int(job["cursor"]), consumer.batch_max, where,
    )
    if not rows:
        return None
    consumer.handle(conn, records_of(bound, rows))
    return JobProgress(cursor=int(rows[-1]["id"]), done=int(job["done"]) + len(rows))


def revise_step(
    conn: Connection, job: Mapping[str, Any], bound: Bound, sizer: StepSizer | None = None
) -> JobProgress | None:
    """One transaction of a revision: the next rows the consumer applied, revised.

    At most ``sizer.size`` rows (its time budget's worth, learnt from the last step:
    :mod:`downlink.pipeline.stepsize`), or the consumer's ``batch_max`` without one.
    """
    revision = bound.consumer.revision
    if revision is None:
        raise LookupError(f"consumer {bound.name!r} cannot revise its rows in place")
    params = dict(job["params"] or {})
    job_id, owner = int(job["id"]), str(job["owner"])
    # A restart (the inputs changed again) put them back to 0: run_step consumed it.
    after, done, changed = int(job["cursor"]), int(job["done"]), int(job["changed"])
    consumer = bound.consumer
    cursors.ensure(conn, bound.name, consumer.follows)
    # Hold the live consumer: it waits for this step, and applies its batch after.
    applied = cursors.lock(conn, bound.name, wait=True) or follow.START
    tick = stepsize.clock(conn.dialect.name)
    started = tick()  # from here on the step holds the lock
    size = consumer.batch_max if sizer is None else sizer.size
    since, until = _range(params)
    where = _filtered(bound, _values(params))
    if revision.where is not None:
        where.append(revision.where(bound.table))
    if revision.narrow is not None and params.get(NARROW) is not None:
        where.append(revision.narrow(conn, bound.table, list(params[NARROW])))
    total = None
    if after == 0:
        total = follow.count_range(
            conn, bound.table, consumer.ts_column, since, until, applied, where
        )
    rows = follow.read_range(
        conn, bound.table, consumer.ts_column, since, until, applied, after, size, where,
    )
    if not rows:
        if total is not None:  # nothing at all: still record the (re)start
            jobs.progress(conn, job_id, owner, cursor=0, done=0, changed=0, total=total)
        return None
    n = revision.apply(conn, records_of(bound, rows))
    if sizer is not None:
        sizer.took(size, tick() - started, conn.dialect.name)
    return JobProgress(
        cursor=int(rows[-1]["id"]),
        done=done + len(rows),
        changed=changed + n,
        total=None if total is None else max(total, len(rows)),
    )


def job_kinds(bounds: Sequence[Bound]) -> list[JobKind]:
    """The ``reprocess`` job kind over these consumers, and each consumer's revision
    job kind (``Revision.kind``)."""
    by_name = {b.name: b for b in bounds}
    # One sizer per consumer with a revision: its revisions run one at a time (its lane).
    sizers = {b.name: StepSizer(b.consumer.batch_max)
              for b in bounds if b.consumer.revision is not None}

    def run(conn: Connection, job: Mapping[str, Any]) -> JobProgress | None:
        return step(conn, job, by_name, sizers)

    kinds = [JobKind(KIND, run)]
    for b in bounds:
        revision = b.consumer.revision
        if revision is not None and revision.kind is not None:
            kinds.append(JobKind(revision.kind, _reviser(b, sizers[b.name])))
    return kinds


def _reviser(bound: Bound, sizer: StepSizer) -> Any:
    def run(conn: Connection, job: Mapping[str, Any]) -> JobProgress | None:
        return revise_step(conn, job, bound, sizer)

    return run


def job_kind(bounds: Sequence[Bound]) -> JobKind:
    """The ``reprocess`` job kind over these consumers."""
    return job_kinds(bounds)[0]


def revision_kinds(bounds: Sequence[Bound]) -> tuple[str, ...]:
    """The revision job kinds of these consumers."""
    return tuple(
        b.consumer.revision.kind
        for b in bounds
        if b.consumer.revision is not None and b.consumer.revision.kind is not None
    )


def recent(
    conn: Connection, limit: int = 20, kinds: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The newest reprocess jobs (and jobs of ``kinds``: revisions), with their
    parameters (for the status page)."""
    rows = conn.execute(
        select(jobs_table)
        .where(jobs_table.c.kind.in_((KIND, *kinds)))
        .order_by(jobs_table.c.id.desc())
        .limit(limit)
    ).mappings()
    out = []
    for row in rows:
        entry = jobs.as_status(dict(row))
        params = dict(row["params"] or {})
        params.pop("boundary", None)
        params.pop(jobs.LANE, None)
        entry["params"] = params
        out.append(entry)
    return out
