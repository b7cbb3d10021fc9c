"""The regroup job: chunked, restartable, resumable, failing cleanly; on both databases.

Most tests drive the job's steps (claim, one chunk, finish) directly, so that a
blacklist edit can be made between two chunks deterministically.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from downlink.pipeline.jobrunner import STALE_AFTER_S, JobRunner
from downlink.sources.clearlinux import regroup
from downlink.sources.clearlinux.crashes import add_to_blacklist, remove_from_blacklist
from downlink.sources.clearlinux.regroup import (
    KIND,
    KINDS,
    RegroupRun,
    rebuild_all,
    regroup_status,
    regroup_step,
    request_regroup,
)
from downlink.sources.clearlinux.tables import guilty, rollup_guilty
from downlink.store import jobs
from downlink.store.database import Store
from downlink.store.tables import records
from tests.web.helpers import CRASH, load, rec

NANOSLEEP = ("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")
CLASS = "org.clearlinux/crash/clr"


def _crashes(store: Store, n: int = 3) -> list[int]:
    rows = load(store, [rec(classification=CLASS, payload=CRASH, severity=3) for _ in range(n)])
    return [int(r["id"]) for r in rows]


def _groups(store: Store) -> list[str]:
    """The guilty function of every backtrace record, by id."""

    def q(conn: Connection) -> list[str]:
        rows = conn.execute(
            select(guilty.c.function)
            .select_from(records.join(guilty, guilty.c.id == records.c.guilty_id))
            .where(records.c.classification == CLASS)
            .order_by(records.c.id)
        )
        return [str(f) for (f,) in rows]

    return store.run(q)


def _rollup(store: Store) -> dict[str, int]:
    def q(conn: Connection) -> dict[str, int]:
        rows = conn.execute(
            select(guilty.c.function, func.sum(rollup_guilty.c.count))
            .join(guilty, guilty.c.id == rollup_guilty.c.guilty_id)
            .group_by(guilty.c.function)
        )
        return {str(f): int(n) for f, n in rows}

    return store.run(q)


def _edit(store: Store, change: Any, pairs: list[tuple[str, str]]) -> int:
    """What the blacklist POST does: edit, then restart or queue the job."""

    def tx(conn: Connection) -> int:
        change(conn, pairs)
        return request_regroup(conn)

    return store.run_write(tx)


def _claim(store: Store, owner: str, now: float | None = None) -> dict[str, Any] | None:
    return store.run_write(
        lambda c: jobs.claim(c, KINDS, owner, stale_after=STALE_AFTER_S, now=now)
    )


def test_an_edit_queues_one_job_and_later_edits_restart_it(store: Store) -> None:
    assert store.run(regroup_status) is None
    first = _edit(store, add_to_blacklist, [NANOSLEEP])
    assert _edit(store, add_to_blacklist, [("f()", "m")]) == first
    status = store.run(regroup_status)
    assert status is not None
    assert (status["id"], status["state"], status["restart"]) == (first, "pending", True)
    job = _claim(store, "a")
    assert job is not None and job["id"] == first
    run = RegroupRun.claimed(job, "a")
    while run.more:
        run = store.run_write(regroup_step, run)
    assert store.run_write(rebuild_all, run) is True
    assert store.run(regroup_status)["state"] == "done"  # type: ignore[index]
    # Once the job is done, the next edit queues a new one.
    assert _edit(store, remove_from_blacklist, [("f()", "m")]) != first


def test_the_runner_regroups_in_chunks_and_rebuilds_the_rollups(store: Store) -> None:
    _crashes(store, 5)
    assert _rollup(store) == {NANOSLEEP[0]: 5}
    _edit(store, add_to_blacklist, [NANOSLEEP])
    assert asyncio.run(JobRunner(store, chunk=2).run_next()) is True
    assert _groups(store) == ["__nanosleep()"] * 5
    assert _rollup(store) == {"__nanosleep()": 5}
    status = store.run(regroup_status)
    assert status is not None
    assert (status["state"], status["done"], status["total"]) == ("done", 5, 5)
    assert (status["changed"], status["percent"], status["message"]) == (5, 100, None)
    assert asyncio.run(JobRunner(store).run_next()) is False  # nothing left to claim


def test_an_edit_between_chunks_restarts_the_job(store: Store) -> None:
    ids = _crashes(store, 3)
    _edit(store, add_to_blacklist, [NANOSLEEP])
    job = _claim(store, "a")
    assert job is not None
    run = store.run_write(regroup_step, RegroupRun.claimed(job, "a", chunk=1))
    assert (run.cursor, run.done) == (ids[0], 1)
    assert _groups(store) == ["__nanosleep()", NANOSLEEP[0], NANOSLEEP[0]]

    _edit(store, remove_from_blacklist, [NANOSLEEP])  # while the job runs
    run = store.run_write(regroup_step, run)
    # It started over from the first record with the reloaded (now empty) blacklist.
    assert (run.cursor, run.done, run.changed) == (ids[0], 1, 1)
    assert _groups(store) == [NANOSLEEP[0]] * 3
    while run.more:
        run = store.run_write(regroup_step, run)

    # An edit after the last chunk: finishing refuses, the job goes round again.
    _edit(store, add_to_blacklist, [NANOSLEEP])
    assert store.run_write(rebuild_all, run) is False
    assert store.run(regroup_status)["state"] == "running"  # type: ignore[index]
    run = store.run_write(regroup_step, run)
    assert run.done == 1
    while run.more:
        run = store.run_write(regroup_step, run)
    assert store.run_write(rebuild_all, run) is True
    assert _groups(store) == ["__nanosleep()"] * 3
    assert _rollup(store) == {"__nanosleep()": 3}
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["restart"]) == ("done", False)


def test_a_job_with_a_stale_heartbeat_is_taken_over_and_resumed(store: Store) -> None:
    ids = _crashes(store, 3)
    _edit(store, add_to_blacklist, [NANOSLEEP])
    job = _claim(store, "dead")
    assert job is not None
    dead = store.run_write(regroup_step, RegroupRun.claimed(job, "dead", chunk=1))
    # While its heartbeat is fresh, nobody else may take it.
    assert _claim(store, "b") is None
    later = time.time() + STALE_AFTER_S + 1
    taken = _claim(store, "b", now=later)
    assert taken is not None and (taken["cursor"], taken["done"]) == (ids[0], 1)
    # The first owner's next chunk is refused and rolled back.
    with pytest.raises(jobs.JobLost):
        store.run_write(regroup_step, dead)
    assert _groups(store) == ["__nanosleep()", NANOSLEEP[0], NANOSLEEP[0]]
    run = RegroupRun.claimed(taken, "b", chunk=1)
    while run.more:
        run = store.run_write(regroup_step, run)
    assert store.run_write(rebuild_all, run) is True
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["done"]) == ("done", 3)
    assert _groups(store) == ["__nanosleep()"] * 3


def test_stopping_puts_the_job_back_and_the_next_runner_resumes_it(store: Store) -> None:
    ids = _crashes(store, 3)
    _edit(store, add_to_blacklist, [NANOSLEEP])

    class StopAfterOneChunk:
        """The store, seen by a runner that is asked to stop after its first chunk."""

        def __init__(self) -> None:
            self.runner = JobRunner(self, chunk=1)

        async def read(self, fn: Any, *args: Any) -> Any:
            return await store.read(fn, *args)

        async def read_primary(self, fn: Any, *args: Any) -> Any:
            return await store.read_primary(fn, *args)

        async def admin_write(self, fn: Any, *args: Any) -> Any:
            result = await store.admin_write(fn, *args)
            if fn is regroup_step:
                self.runner._stopping = True
            return result

    assert asyncio.run(StopAfterOneChunk().runner.run_next()) is True
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["done"]) == ("pending", 1)
    assert store.run(lambda c: jobs.get(c, status["id"]))["cursor"] == ids[0]  # type: ignore[index]
    assert asyncio.run(JobRunner(store, chunk=1).run_next()) is True
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["done"]) == ("done", 3)
    assert _groups(store) == ["__nanosleep()"] * 3


def test_a_failing_job_is_marked_failed_with_its_message(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _crashes(store, 2)
    _edit(store, add_to_blacklist, [NANOSLEEP])

    def broken(*args: Any) -> Any:
        raise RuntimeError("payload parser exploded")

    monkeypatch.setattr(regroup, "regroup_chunk", broken)
    assert asyncio.run(JobRunner(store).run_next()) is True
    status = store.run(regroup_status)
    assert status is not None and status["state"] == "failed"
    assert status["message"] == "RuntimeError: payload parser exploded"
    assert "regroup job" in caplog.text and "failed" in caplog.text
    assert _groups(store) == [NANOSLEEP[0]] * 2  # the failed chunk rolled back
    # A failed job is not retried by itself; the next edit queues a new one.
    assert asyncio.run(JobRunner(store).run_next()) is False
    assert _edit(store, add_to_blacklist, [("f()", "m")]) != status["id"]


def test_one_kind_runs_one_job_at_a_time(store: Store) -> None:
    first = store.run_write(lambda c: jobs.enqueue(c, KIND))
    second = store.run_write(lambda c: jobs.enqueue(c, KIND))
    job = _claim(store, "a")
    assert job is not None and job["id"] == first
    assert _claim(store, "b") is None
    store.run_write(lambda c: jobs.fail(c, first, "a", "boom"))
    job = _claim(store, "b")
    assert job is not None and job["id"] == second
    # Only the claim's owner may move the job on.
    assert store.run_write(lambda c: jobs.fail(c, second, "a", "not mine")) is False
    assert store.run_write(lambda c: jobs.release(c, second, "b")) is True


def test_finished_jobs_older_than_a_month_are_pruned_but_the_newest_stays(store: Store) -> None:
    from downlink.store.tables import jobs as jobs_table

    month = 31 * 86400.0
    now = time.time()

    def finished(conn: Connection, age: float) -> int:
        job_id = jobs.enqueue(conn, "regroup", now=now - age)
        assert jobs.claim(conn, ("regroup",), "o", 60.0, now=now - age) is not None
        assert jobs.finish(conn, job_id, "o", now=now - age)
        return job_id

    def left() -> list[int]:
        return store.run(
            lambda c: [
                int(i)
                for i in c.execute(select(jobs_table.c.id).order_by(jobs_table.c.id)).scalars()
            ]
        )

    for age in (3 * month, 2 * month):
        store.run_write(finished, age)
    newest_old = store.run_write(finished, month)
    # Nothing newer: the last finished job stays, to be shown.
    assert store.run_write(jobs.prune, "regroup") == 2
    assert left() == [newest_old]
    recent = store.run_write(finished, 3600.0)
    queued = store.run_write(lambda c: jobs.enqueue(c, "regroup", now=now))
    assert store.run_write(jobs.prune, "regroup") == 1
    assert left() == [recent, queued]
