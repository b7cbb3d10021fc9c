"""The regroup job: a revision of the crash consumer's records, batch by batch, on both
databases: restartable, resumable, failing cleanly, never showing a group emptied or
half rebuilt, and equal to a full rebuild of the crash rollups.

Most tests drive the job's steps (claim, one batch) directly, so that a blacklist edit
can be made between two batches deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from downlink.pipeline import reprocess
from downlink.pipeline.consumers import Bound
from downlink.pipeline.jobkinds import run_step
from downlink.pipeline.jobrunner import STALE_AFTER_S, JobRunner
from downlink.pipeline.stepsize import StepSizer
from downlink.sources.base import JobKind
from downlink.sources.clearlinux import consumers
from downlink.sources.clearlinux.consumers import CRASHES
from downlink.sources.clearlinux.crashes import add_to_blacklist, remove_from_blacklist
from downlink.sources.clearlinux.regroup import KIND, KINDS, regroup_status, request_regroup
from downlink.sources.clearlinux.rollups import rebuild_guilty_rollups
from downlink.sources.clearlinux.tables import (
    guilty,
    rollup_guilty,
    rollup_guilty_build_sketch,
    rollup_guilty_machine_totals,
    rollup_guilty_machines,
    rollup_guilty_sketch,
)
from downlink.store import jobs
from downlink.store.database import Store
from downlink.store.tables import records
from downlink.testing.generate import RecordGenerator
from tests.web.helpers import CRASH, load, rec

NANOSLEEP = ("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")
CLASS = "org.clearlinux/crash/clr"
CRASH_TABLES = (
    rollup_guilty,
    rollup_guilty_machines,
    rollup_guilty_machine_totals,
    rollup_guilty_sketch,
    rollup_guilty_build_sketch,
)


def _kind(batch: int = 2000) -> JobKind:
    """The regroup job kind, walking ``batch`` records per step."""
    crashes = dataclasses.replace(CRASHES, batch_max=batch)
    kinds = reprocess.job_kinds([Bound("clearlinux", crashes, records)])
    return next(k for k in kinds if k.kind == KIND)


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


def _mark(store: Store, pairs: list[tuple[str, str]]) -> int:
    """What the blacklist POST does when it marks frames never guilty."""

    def tx(conn: Connection) -> int:
        add_to_blacklist(conn, pairs)
        return request_regroup(conn, pairs)

    return store.run_write(tx)


def _claim(store: Store, owner: str, now: float | None = None) -> dict[str, Any] | None:
    return store.run_write(
        lambda c: jobs.claim(c, KINDS, owner, stale_after=STALE_AFTER_S, now=now)
    )


def _step(store: Store, job_id: int, owner: str, batch: int = 1) -> bool:
    return bool(store.run_write(run_step, _kind(batch), job_id, owner))


def _job(store: Store, job_id: int) -> dict[str, Any]:
    found = store.run(lambda c: jobs.get(c, job_id))
    assert found is not None
    return found


def _all(store: Store, table: Any) -> list[tuple[Any, ...]]:
    return sorted(store.run(lambda c: [tuple(r) for r in c.execute(select(table))]))


def test_an_edit_queues_one_job_and_later_edits_restart_it(store: Store) -> None:
    assert store.run(regroup_status) is None
    first = _edit(store, add_to_blacklist, [NANOSLEEP])
    assert _edit(store, add_to_blacklist, [("f()", "m")]) == first
    status = store.run(regroup_status)
    assert status is not None
    assert (status["id"], status["state"], status["restart"]) == (first, "pending", True)
    job = _claim(store, "a")
    assert job is not None and job["id"] == first
    # It revises the crash consumer's records, in that consumer's lane.
    assert job["params"]["consumer"] == "clearlinux_crashes"
    assert jobs.lane(job["kind"], job["params"]) == "consumer:clearlinux_crashes"
    while _step(store, first, "a"):
        pass
    assert store.run(regroup_status)["state"] == "done"  # type: ignore[index]
    # Once the job is done, the next edit queues a new one.
    assert _edit(store, remove_from_blacklist, [("f()", "m")]) != first


def test_the_runner_regroups_in_batches_and_moves_the_rollups(store: Store) -> None:
    _crashes(store, 5)
    assert _rollup(store) == {NANOSLEEP[0]: 5}
    _edit(store, add_to_blacklist, [NANOSLEEP])
    assert asyncio.run(JobRunner(store, kinds=[_kind(2)]).run_next()) is True
    assert _groups(store) == ["__nanosleep()"] * 5
    assert _rollup(store) == {"__nanosleep()": 5}
    status = store.run(regroup_status)
    assert status is not None
    assert (status["state"], status["done"], status["total"]) == ("done", 5, 5)
    assert (status["changed"], status["percent"], status["message"]) == (5, 100, None)
    # Nothing left to claim.
    assert asyncio.run(JobRunner(store, kinds=[_kind()]).run_next()) is False


def test_an_edit_between_batches_restarts_the_job(store: Store) -> None:
    ids = _crashes(store, 3)
    first = _edit(store, add_to_blacklist, [NANOSLEEP])
    assert _claim(store, "a") is not None
    assert _step(store, first, "a")
    assert (_job(store, first)["cursor"], _job(store, first)["done"]) == (ids[0], 1)
    assert _groups(store) == ["__nanosleep()", NANOSLEEP[0], NANOSLEEP[0]]
    # Each record is counted in exactly one group, batch after batch.
    assert _rollup(store) == {"__nanosleep()": 1, NANOSLEEP[0]: 2}

    _edit(store, remove_from_blacklist, [NANOSLEEP])  # while the job runs
    assert _step(store, first, "a")
    # It started over from the first record with the reloaded (now empty) blacklist.
    job = _job(store, first)
    assert (job["cursor"], job["done"], job["changed"]) == (ids[0], 1, 1)
    assert _groups(store) == [NANOSLEEP[0]] * 3
    while _step(store, first, "a"):
        pass
    assert store.run(regroup_status)["state"] == "done"  # type: ignore[index]

    # An edit after the last batch but before the job finished: it goes round again.
    second = _edit(store, add_to_blacklist, [NANOSLEEP])
    assert _claim(store, "a") is not None
    for _ in range(3):
        assert _step(store, second, "a")
    _edit(store, remove_from_blacklist, [NANOSLEEP])
    _edit(store, add_to_blacklist, [NANOSLEEP])
    assert _step(store, second, "a")  # would have finished: restarts instead
    assert store.run(regroup_status)["state"] == "running"  # type: ignore[index]
    assert _job(store, second)["done"] == 1
    while _step(store, second, "a"):
        pass
    assert _groups(store) == ["__nanosleep()"] * 3
    assert _rollup(store) == {"__nanosleep()": 3}
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["restart"]) == ("done", False)


def test_a_job_with_a_stale_heartbeat_is_taken_over_and_resumed(store: Store) -> None:
    ids = _crashes(store, 3)
    job_id = _edit(store, add_to_blacklist, [NANOSLEEP])
    assert _claim(store, "dead") is not None
    assert _step(store, job_id, "dead")
    # While its heartbeat is fresh, nobody else may take it.
    assert _claim(store, "b") is None
    later = time.time() + STALE_AFTER_S + 1
    taken = _claim(store, "b", now=later)
    assert taken is not None and (taken["cursor"], taken["done"]) == (ids[0], 1)
    # The first owner's next batch is refused and rolled back.
    with pytest.raises(jobs.JobLost):
        _step(store, job_id, "dead")
    assert _groups(store) == ["__nanosleep()", NANOSLEEP[0], NANOSLEEP[0]]
    while _step(store, job_id, "b"):
        pass
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["done"]) == ("done", 3)
    assert _groups(store) == ["__nanosleep()"] * 3
    assert _rollup(store) == {"__nanosleep()": 3}


def test_stopping_puts_the_job_back_and_the_next_runner_resumes_it(store: Store) -> None:
    ids = _crashes(store, 3)
    _edit(store, add_to_blacklist, [NANOSLEEP])

    class StopAfterOneBatch:
        """The store, seen by a runner that is asked to stop after its first batch."""

        def __init__(self) -> None:
            self.runner = JobRunner(self, kinds=[_kind(1)])

        async def read(self, fn: Any, *args: Any) -> Any:
            return await store.read(fn, *args)

        async def read_primary(self, fn: Any, *args: Any) -> Any:
            return await store.read_primary(fn, *args)

        async def admin_write(self, fn: Any, *args: Any) -> Any:
            result = await store.admin_write(fn, *args)
            if fn is run_step:
                self.runner._stopping = True
            return result

    assert asyncio.run(StopAfterOneBatch().runner.run_next()) is True
    status = store.run(regroup_status)
    assert status is not None and (status["state"], status["done"]) == ("pending", 1)
    assert _job(store, status["id"])["cursor"] == ids[0]
    assert asyncio.run(JobRunner(store, kinds=[_kind(1)]).run_next()) is True
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

    monkeypatch.setattr(consumers, "assign_groups", broken)
    assert asyncio.run(JobRunner(store, kinds=[_kind()]).run_next()) is True
    status = store.run(regroup_status)
    assert status is not None and status["state"] == "failed"
    assert status["message"] == "RuntimeError: payload parser exploded"
    assert "regroup job" in caplog.text and "failed" in caplog.text
    assert _groups(store) == [NANOSLEEP[0]] * 2  # the failed batch rolled back
    assert _rollup(store) == {NANOSLEEP[0]: 2}
    # A failed job is not retried by itself; the next edit queues a new one.
    assert asyncio.run(JobRunner(store, kinds=[_kind()]).run_next()) is False
    assert _edit(store, add_to_blacklist, [("f()", "m")]) != status["id"]


def test_edits_marking_frames_narrow_the_job_and_merge_while_it_waits(store: Store) -> None:
    _crashes(store, 2)
    other = ("f()", "m")

    def params(job_id: int) -> dict[str, Any]:
        return dict(_job(store, job_id)["params"])

    first = _mark(store, [NANOSLEEP])
    assert params(first)["narrow"] == [list(NANOSLEEP)]
    # A second edit while it waits: one job, the union of both edits' frames.
    assert _mark(store, [other]) == first
    assert params(first)["narrow"] == [list(NANOSLEEP), list(other)]
    assert _job(store, first)["restart"]
    # Frames allowed again may take crashes from any group: every crash then.
    assert _edit(store, remove_from_blacklist, [other]) == first
    assert "narrow" not in params(first)
    assert _mark(store, [other]) == first
    assert "narrow" not in params(first)
    assert _claim(store, "a") is not None
    while _step(store, first, "a"):
        pass
    assert _job(store, first)["done"] == 2
    # After a failed job (crashes left behind), the next edit regroups every crash.
    failed = _mark(store, [("g()", "m")])
    assert params(failed)["narrow"] == [["g()", "m"]]
    assert _claim(store, "b") is not None
    store.run_write(lambda c: jobs.fail(c, failed, "b", "boom"))
    after_failure = _mark(store, [("h()", "m")])
    assert after_failure != failed and "narrow" not in params(after_failure)


def test_one_lane_runs_one_job_at_a_time(store: Store) -> None:
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


def test_a_regroup_and_a_replay_of_the_crash_consumer_share_a_lane(store: Store) -> None:
    regroup_id = _edit(store, add_to_blacklist, [NANOSLEEP])
    replay = reprocess.plan("clearlinux", "clearlinux_crashes", *_today())
    replay_id = store.run_write(reprocess.find_or_enqueue, replay)
    both = (KIND, reprocess.KIND)
    claimed = store.run_write(lambda c: jobs.claim(c, both, "x", STALE_AFTER_S, job_id=replay_id))
    assert claimed is not None
    assert store.run_write(lambda c: jobs.claim(c, both, "y", STALE_AFTER_S)) is None
    store.run_write(lambda c: jobs.release(c, replay_id, "x"))
    claimed = store.run_write(lambda c: jobs.claim(c, both, "y", STALE_AFTER_S))
    assert claimed is not None and claimed["id"] == regroup_id
    # Another consumer's replay has a lane of its own.
    other = reprocess.plan("clearlinux", "clearlinux_rollups", *_today())
    other_id = store.run_write(reprocess.find_or_enqueue, other)
    claimed = store.run_write(lambda c: jobs.claim(c, both, "z", STALE_AFTER_S))
    assert claimed is not None and claimed["id"] == other_id


def _today() -> tuple[Any, Any]:
    from datetime import UTC, datetime

    day = datetime.now(UTC).date()
    return day, day


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


def _grouped(conn: Connection) -> int:
    """Crash records the rollups must count (grouped, not flagged)."""
    r = records.c
    found = conn.execute(
        select(func.count()).where(r.guilty_id.is_not(None), r.sender_flagged.is_not(True))
    ).scalar_one()
    return int(found)


def _counted(conn: Connection) -> tuple[int, int]:
    g, m = rollup_guilty.c, rollup_guilty_machines.c
    by_day = conn.execute(select(func.coalesce(func.sum(g.count), 0))).scalar_one()
    by_machine = conn.execute(select(func.coalesce(func.sum(m.count), 0))).scalar_one()
    return int(by_day), int(by_machine)


def _regroup_watching(store: Store, batch: int) -> tuple[int, int]:
    """Run the queued regroup job batch by batch; after every batch each crash record is
    counted exactly once (no group emptied or half rebuilt). Returns (done, changed)."""
    job = _claim(store, "w")
    assert job is not None
    job_id = int(job["id"])
    expected = store.run(_grouped)
    steps = 0
    while _step(store, job_id, "w", batch):
        steps += 1
        assert store.run(_counted) == (expected, expected)
    assert steps > 3
    done = _job(store, job_id)
    assert done["state"] == "done"
    return int(done["done"]), int(done["changed"])


def test_a_regroup_moves_records_between_groups_and_equals_a_rebuild(store: Store) -> None:
    gen = RecordGenerator(seed=17, machines=30, days=6)
    rows = list(gen.rows(900))
    for start in range(0, len(rows), 300):
        load(store, rows[start : start + 300])
    # A few flagged crashes: grouped, never counted.
    load(store, [rec(classification=CLASS, payload=CRASH, sender_flagged=True) for _ in "ab"])
    crashes = store.run(lambda c: c.execute(
        select(func.count()).where(records.c.guilty_id.is_not(None))).scalar_one())
    assert crashes > 100

    def rebuilt() -> list[list[tuple[Any, ...]]]:
        """The crash rollups rebuilt from the records (then put back as they were)."""
        kept = [_all(store, t) for t in CRASH_TABLES]
        store.run_write(rebuild_guilty_rollups)
        fresh = [_all(store, t) for t in CRASH_TABLES]
        assert fresh == kept, "the regroup's rollups differ from a rebuild"
        return fresh

    # Whole groups leave (their frame is never guilty any more): the job walks only
    # the crashes in those groups ...
    marked = [("raise()", "libc.so.6"), ("abort()", "libc.so.6"), ("__GI___poll()", "libc.so.6")]

    def in_groups(conn: Connection) -> int:
        g = guilty.c
        ids = select(g.id).where(g.function.in_([f for f, _ in marked]), g.module == "libc.so.6")
        return int(conn.execute(
            select(func.count()).where(records.c.guilty_id.in_(ids))).scalar_one())

    moving = store.run(in_groups)
    assert 20 < moving < crashes
    _mark(store, marked)
    done, changed = _regroup_watching(store, 7)
    assert done == moving and changed > 20
    first = rebuilt()
    # ... and that was all that had to move: a full regroup changes nothing.
    store.run_write(request_regroup)
    assert _regroup_watching(store, 50) == (crashes, 0)
    # ... and a frame allowed again takes records from many groups, partly.
    _edit(store, remove_from_blacklist, [("abort()", "libc.so.6")])
    done, changed = _regroup_watching(store, 41)
    assert changed > 5
    second = rebuilt()
    assert second != first
    # Twice: nothing moves, and the rollups stay identical.
    store.run_write(request_regroup)
    done, changed = _regroup_watching(store, 50)
    assert (done, changed) == (crashes, 0)
    assert [_all(store, t) for t in CRASH_TABLES] == second


def _snapshot(store: Store) -> list[list[tuple[Any, ...]]]:
    """Every crash rollup row and every record's group."""
    groups = store.run(lambda c: [tuple(r) for r in c.execute(
        select(records.c.id, records.c.guilty_id).order_by(records.c.id))])
    return [*(_all(store, t) for t in CRASH_TABLES), groups]


def _regroup_sized(store: Store, sizer: StepSizer) -> list[int]:
    """Run the queued regroup job with steps of ``sizer``'s sizes; the rows of each
    step (after each, every crash record counted once)."""
    bound = Bound("clearlinux", CRASHES, records)
    kind = JobKind(KIND, lambda c, j: reprocess.revise_step(c, j, bound, sizer))
    job = _claim(store, "sized")
    assert job is not None
    job_id = int(job["id"])
    expected = store.run(_grouped)
    rows: list[int] = []
    done = 0
    while store.run_write(run_step, kind, job_id, "sized"):
        assert store.run(_counted) == (expected, expected)
        now = int(_job(store, job_id)["done"])
        rows.append(now - done)
        done = now
    assert _job(store, job_id)["state"] == "done"
    return rows


def test_the_regroup_gives_the_same_groups_and_rollups_whatever_its_step_sizes(
    store: Store,
) -> None:
    gen = RecordGenerator(seed=23, machines=25, days=5)
    rows = list(gen.rows(700))
    for start in range(0, len(rows), 350):
        load(store, rows[start : start + 350])
    before = _snapshot(store)
    marked = [("raise()", "libc.so.6"), ("abort()", "libc.so.6"), ("__GI___poll()", "libc.so.6")]

    # Tiny steps: one to three records each.
    _mark(store, marked)
    tiny = _regroup_sized(store, StepSizer(3, smallest=1, budget_s=1e-9))
    assert len(tiny) > 8 and max(tiny) <= 3
    after_tiny = _snapshot(store)
    assert after_tiny != before

    # Allowed again, in one large step: back to the groups the consumer gave.
    _edit(store, remove_from_blacklist, marked)
    assert len(_regroup_sized(store, StepSizer(100_000))) <= 2
    assert _snapshot(store) == before

    # Large steps give what tiny ones gave, ...
    _mark(store, marked)
    large = _regroup_sized(store, StepSizer(100_000, budget_s=3600.0))
    assert _snapshot(store) == after_tiny
    assert len(large) < len(tiny)

    # ... and so do steps sized by a budget so small that they keep changing: within
    # their bounds (the last one may find fewer rows left than the smallest).
    _edit(store, remove_from_blacklist, marked)
    _regroup_sized(store, StepSizer(100_000))
    _mark(store, marked)
    sizer = StepSizer(40, smallest=5, budget_s=0.003)
    adaptive = _regroup_sized(store, sizer)
    assert all(n <= 40 for n in adaptive) and all(n >= 5 for n in adaptive[:-1])
    assert 5 <= sizer.size <= 40
    assert _snapshot(store) == after_tiny


def test_downlink_reprocess_in_place_regroups_a_range_from_the_cli(store: Store) -> None:
    from click.testing import CliRunner

    from downlink.cli.main import cli

    gen = RecordGenerator(seed=23, machines=20, days=4)
    load(store, list(gen.rows(400)))
    before = [_all(store, t) for t in CRASH_TABLES]
    # An edit without its regroup job: the CLI revises the crash consumer's records.
    store.run_write(add_to_blacklist, [("raise()", "libc.so.6"), ("abort()", "libc.so.6")])
    _, last = _today()
    first = last.fromordinal(last.toordinal() - 5)
    span = ["--since", first.isoformat(), "--until", last.isoformat()]
    url = store.settings.database_url
    base = ["reprocess", "--source", "clearlinux", *span, "--database-url", url]
    refused = CliRunner().invoke(cli, [*base, "--consumer", "clearlinux_rollups", "--in-place"])
    assert refused.exit_code == 2 and "revises its rows in place" in refused.output
    crashes = store.run(_grouped)
    dry = CliRunner().invoke(cli, [*base, "--in-place", "--dry-run"])
    assert f"would revise {crashes} records row(s) through clearlinux_crashes" in dry.output
    assert [_all(store, t) for t in CRASH_TABLES] == before
    done = CliRunner().invoke(cli, [*base, "--consumer", "clearlinux_crashes", "--in-place"])
    assert done.exit_code == 0, done.output
    assert f"revised {crashes} row(s) through clearlinux_crashes:" in done.output
    moved = int(done.output.rsplit(": ", 1)[1].split()[0])
    assert moved > 0
    after = [_all(store, t) for t in CRASH_TABLES]
    assert after != before
    store.run_write(rebuild_guilty_rollups)
    assert [_all(store, t) for t in CRASH_TABLES] == after
    again = CliRunner().invoke(cli, [*base, "--in-place"])  # the source's revisable ones
    assert again.exit_code == 0 and ": 0 changed" in again.output, again.output
