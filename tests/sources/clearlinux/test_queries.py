"""Dashboard queries answer from the rollups, on both databases."""

from __future__ import annotations

import time
from datetime import date

from downlink.sources.clearlinux.queries import builds, crashes, mce, population, stats
from downlink.sources.clearlinux.rollups import day_of
from downlink.store.database import Store
from downlink.store.queries.period import Period, RollupFilter, build_sort_key, day_number
from tests.web.helpers import CRASH, MCE, OOPS, load, rec

DAY = 86400.0


def test_builds_integer_first_numerically_then_others(db: Store) -> None:
    load(db, [rec(build=b) for b in ("100", "9", "16.04", "31000", "9", "rolling")])
    rows = db.run(builds.records_per_build, Period.past(1), RollupFilter())
    assert rows == [("9", 2), ("100", 1), ("31000", 1), ("16.04", 1), ("rolling", 1)]
    assert build_sort_key("010") < build_sort_key("9a")


def test_builds_respect_period_and_filters(db: Store) -> None:
    now = time.time()
    load(
        db,
        [
            rec(build="1", ts_reception=now - 40 * DAY),
            rec(build="2", severity=3),
            rec(build="3", classification="org.clearlinux/journal/error"),
        ],
    )
    assert db.run(builds.records_per_build, Period.past(30), RollupFilter()) == [("2", 1), ("3", 1)]
    sev = db.run(builds.records_per_build, Period.past(90), RollupFilter(severity=3))
    assert sev == [("2", 1)]
    wild = RollupFilter(classification="org.clearlinux/journal/*")
    assert db.run(builds.records_per_build, Period.past(90), wild) == [("3", 1)]


def test_stats_breakdowns(db: Store) -> None:
    load(
        db,
        [
            rec(),
            rec(),
            rec(
                classification="org.clearlinux/crash/clr",
                severity=3,
                host_type="Dell Inc.|XPS 13 9370|1.0",
            ),
        ],
    )
    p, f = Period.past(1), RollupFilter()
    assert db.run(stats.by_classification, p, f) == [
        ("org.clearlinux/heartbeat/ping", 2),
        ("org.clearlinux/crash/clr", 1),
    ]
    assert db.run(stats.by_platform, p, f) == [
        ("Intel Corporation|NUC7i5BNH|J31144-313", 2),
        ("Dell Inc.|XPS 13 9370|1.0", 1),
    ]
    assert db.run(stats.by_severity, p, f) == [(1, 2), (3, 1)]
    assert db.run(stats.per_day, p, f) == [(day_of(time.time()), 3)]


def test_population_buckets_count_distinct_machines(db: Store) -> None:
    monday = day_number(date(2024, 1, 1))  # a Monday
    t = monday * DAY + 3600
    rows = [
        rec(machine_id="a", ts_reception=t),
        rec(machine_id="a", ts_reception=t + DAY),
        rec(machine_id="b", ts_reception=t + DAY),
        rec(machine_id="a", ts_reception=t + 8 * DAY),
        rec(machine_id="c", build="31001", ts_reception=t + 31 * DAY),
    ]
    load(db, rows)
    period = Period(monday, monday + 34)
    days = db.run(population.machines_per_build, period, "day", None)
    assert days["series"]["31000"][:3] == [1, 2, 0]
    weeks = db.run(population.machines_per_build, period, "week", None)
    assert weeks["buckets"][:2] == ["2024-W01", "2024-W02"]
    assert weeks["series"]["31000"][:2] == [2, 1]
    months = db.run(population.machines_per_build, period, "month", None)
    assert months["buckets"] == ["2024-01", "2024-02"]
    assert months["series"] == {"31000": [2, 0], "31001": [0, 1]}
    only = db.run(population.machines_per_build, period, "month", "31001")
    assert only["builds"] == ["31001"]


def test_top_guilties_spread_and_hidden(db: Store) -> None:
    crash = "org.clearlinux/crash/clr"
    load(
        db,
        [
            rec(classification=crash, payload=CRASH, machine_id=m, build=b)
            for m, b in (("a", "1"), ("a", "1"), ("b", "2"), ("c", "2"))
        ],
    )
    load(db, [rec(classification="org.clearlinux/kernel/warning", payload=OOPS)])
    top = db.run(crashes.top_guilties, Period.past(7), None, 10)
    assert [(g["function"], g["total"], g["machines"], g["builds"]) for g in top] == [
        ("clock_nanosleep@GLIBC_2.2.5()", 4, 3, 2),
        ("dump_stack", 1, 1, 1),
    ]
    assert top[0]["per_build"] == {"1": 2, "2": 2}
    assert top[0]["first_seen"] <= top[0]["last_seen"]
    one_build = db.run(crashes.top_guilties, Period.past(7), "2", 10)
    assert [(g["total"], g["machines"]) for g in one_build] == [(2, 2)]
    machines = db.run(crashes.guilty_machines, top[0]["guilty_id"], Period.past(7))
    assert {(m["build"], m["machine_id"], m["records"]) for m in machines} == {
        ("1", "a", 2),
        ("2", "b", 1),
        ("2", "c", 1),
    }
    recs = db.run(lambda c: crashes.guilty_records(c, top[0]["guilty_id"], machine_id="a"))
    assert len(recs) == 2

    from sqlalchemy import update

    from downlink.sources.clearlinux.tables import guilty

    db.run_write(
        lambda c: c.execute(
            update(guilty).where(guilty.c.function == "dump_stack").values(hide=True)
        )
    )
    assert len(db.run(crashes.top_guilties, Period.past(7), None, 10)) == 1
    every = db.run(crashes.top_guilties, Period.past(7), None, 10, True)
    assert [(g["function"], g["hide"]) for g in every] == [
        ("clock_nanosleep@GLIBC_2.2.5()", False),
        ("dump_stack", True),
    ]


def test_mce_summary_and_thermal(db: Store) -> None:
    load(
        db,
        [
            rec(classification="org.clearlinux/mce/corrected", payload=MCE, machine_id="a"),
            rec(classification="org.clearlinux/mce/corrected", payload=MCE, machine_id="a"),
            rec(classification="org.clearlinux/mce/SRAO", payload=MCE, machine_id="b", build="2"),
            rec(classification="org.clearlinux/mce/thermal", payload="THERMAL"),
        ],
    )
    s = db.run(mce.mce_summary, Period.past(14), None, 10)
    assert sum(s["weekly"]["org.clearlinux/mce/corrected"]) == 2
    assert s["by_class"] == [("org.clearlinux/mce/corrected", 2), ("org.clearlinux/mce/SRAO", 1)]
    assert s["by_build"] == [("2", 1), ("31000", 2)]
    assert s["by_status"] == [("00010090", 3)]
    assert s["top_machines"][0] == {"machine_id": "a", "count": 2, "builds": 1}
    th = db.run(mce.thermal_weekly, Period.past(35))
    assert sum(th["counts"]) == 1 and len(th["weeks"]) in (5, 6)


def test_crash_group_machines_ranked_from_totals_equal_summed(db: Store) -> None:
    """The all-time totals walk gives every page exactly as summing the period's rows,
    for periods holding the group's whole history and periods its machines straddle."""
    from tests.sources.clearlinux.crash_spread import HISTORY_DAYS, crash_rows, expected_machines

    rows = crash_rows(singles=400, repeaters=80)
    for start in range(0, len(rows), 500):
        load(db, rows[start : start + 500])
    (top,) = db.run(crashes.top_guilties, Period.past(HISTORY_DAYS))
    gid = top["guilty_id"]
    assert top["total"] == len(rows)
    end = Period.past(1).last
    periods = [
        Period.past(HISTORY_DAYS),  # the whole history
        Period.past(HISTORY_DAYS + 30),
        Period.past(4),  # the newest days: most repeat machines straddle it
        Period(end - 7, end - 3),  # inside the history, straddled at both ends
        Period(end - 40, end - 20),  # before it: nothing
    ]
    for period in periods:
        everything = expected_machines(rows, period)
        assert db.run(crashes._summed_machines, gid, period, None, 0) == everything
        for limit, offset in ((10, 0), (50, 0), (25, 60), (100, 150), (50, 420), (5, 10_000)):
            page = everything[offset : offset + limit]
            ranked = db.run(crashes._ranked_machines, gid, period, limit, offset, None)
            assert ranked == page, (period, limit, offset)
            via = db.run(crashes.guilty_machines, gid, period, limit, offset, len(rows))
            assert via == page, (period, limit, offset)
    # Over budget (the machines with most crashes in all straddle the period): None,
    # and guilty_machines sums instead.
    assert db.run(crashes._ranked_machines, gid, Period.past(4), 1, 0, 1) is None


def test_machine_totals_follow_the_period_rollups(db: Store) -> None:
    from sqlalchemy import func, select

    from downlink.sources.clearlinux.tables import (
        rollup_guilty_machine_totals,
        rollup_guilty_machines,
    )
    from tests.sources.clearlinux.crash_spread import crash_rows

    load(db, crash_rows(singles=50, repeaters=20))
    m = rollup_guilty_machines.c
    summed = select(
        m.guilty_id, m.build, m.machine_id, func.sum(m.count), func.min(m.day), func.max(m.day)
    ).group_by(m.guilty_id, m.build, m.machine_id)
    expected = sorted(tuple(r) for r in db.run(lambda c: c.execute(summed).all()))
    stored = sorted(
        tuple(r) for r in db.run(lambda c: c.execute(select(rollup_guilty_machine_totals)).all())
    )
    assert len(stored) > 70  # 50 single machines, 20 repeat machines on one or two builds
    assert stored == expected
