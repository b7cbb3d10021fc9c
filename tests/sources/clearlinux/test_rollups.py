"""Rollups maintained at ingest match what a scan of ``records`` would say."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from downlink.settings import Settings
from downlink.sources.clearlinux.crashes import add_to_blacklist, recompute_guilty
from downlink.sources.clearlinux.rollups import (
    ROLLUP_TABLES,
    day_of,
    mce_status,
    month_of,
    rebuild_guilty_rollups,
    rebuild_rollups,
    week_of,
)
from downlink.sources.clearlinux.tables import (
    rollup_build_daily,
    rollup_class_daily,
    rollup_daily,
    rollup_guilty,
    rollup_guilty_build_sketch,
    rollup_guilty_machine_totals,
    rollup_guilty_machines,
    rollup_guilty_sketch,
    rollup_machines,
    rollup_mce,
    rollup_mce_build_statuses,
    rollup_mce_daily,
    rollup_mce_machine_weeks,
    rollup_mce_machines,
    rollup_mce_statuses,
    rollup_platform_daily,
    rollup_population,
)
from downlink.store.database import Store
from downlink.store.tables import records
from downlink.testing.generate import RecordGenerator
from tests.web.helpers import CRASH, MCE, OOPS, load, rec

DAY = 86400.0


def _all(store: Store, table: object) -> list[tuple[object, ...]]:
    return sorted(store.run(lambda c: [tuple(r) for r in c.execute(select(table))]))  # type: ignore[arg-type]


def test_daily_counts_follow_every_dimension(db: Store) -> None:
    now = time.time()
    load(db, [rec(ts_reception=now), rec(ts_reception=now), rec(ts_reception=now - DAY)])
    load(db, [rec(ts_reception=now, severity=2, classification="org.clearlinux/journal/error")])
    rows = _all(db, rollup_daily)
    today, yesterday = day_of(now), day_of(now - DAY)
    host = "Intel Corporation|NUC7i5BNH|J31144-313"
    assert rows == sorted(
        [
            (yesterday, "clearlinux", "org.clearlinux/heartbeat/ping", "31000", host, 1, 1),
            (today, "clearlinux", "org.clearlinux/heartbeat/ping", "31000", host, 1, 2),
            (today, "clearlinux", "org.clearlinux/journal/error", "31000", host, 2, 1),
        ]
    )


def test_machines_count_once_per_day_and_build_and_retransmissions_not_at_all(db: Store) -> None:
    now = time.time()
    first = rec(machine_id="a", ts_reception=now)
    load(db, [first, rec(machine_id="a", ts_reception=now), rec(machine_id="b", ts_reception=now)])
    load(db, [rec(machine_id="a", ts_reception=now), rec(machine_id="a", build="31001")])
    stored = load(db, [dict(first)])  # the same record sent again
    assert stored[0]["duplicate"] is True
    pop = {(g, p, b): n for g, p, b, n in _all(db, rollup_population)}
    today = day_of(now)
    assert pop[("d", today, "31000")] == 2 and pop[("d", today, "31001")] == 1
    assert pop[("w", week_of(today), "31000")] == 2
    assert pop[("m", month_of(today), "31001")] == 1
    assert len(pop) == 6
    assert len(_all(db, rollup_machines)) == 9  # 3 (build, machine) pairs x 3 grains
    for cube in (rollup_daily, rollup_class_daily, rollup_build_daily, rollup_platform_daily):
        total = sum(r[-1] for r in _all(db, cube))
        assert total == db.run(
            lambda c: c.execute(select(func.count()).select_from(records)).scalar()
        )


def test_mce_status_is_the_last_eight_hex_digits_before_mcgstatus() -> None:
    assert mce_status(MCE) == "00010090"
    assert mce_status("STATUS cc00008000010091 MCGSTATUS 4") == "00010091"
    assert mce_status("no status here") == ""


def test_mce_rollup_per_class_build_machine_status(db: Store) -> None:
    cls = "org.clearlinux/mce/corrected"
    load(
        db,
        [
            rec(classification=cls, payload=MCE),
            rec(classification=cls, payload=MCE),
            rec(classification="org.clearlinux/mce/SRAR", payload="garbled", machine_id="b"),
        ],
    )
    rows = {(r[1], r[3]): r[4] for r in _all(db, rollup_mce)}
    assert rows == {(cls, "00010090"): 2, ("org.clearlinux/mce/SRAR", ""): 1}
    machines = {(r[1], r[3]): r[4] for r in _all(db, rollup_mce_machines)}
    assert machines == {(cls, "machine-a"): 2, ("org.clearlinux/mce/SRAR", "b"): 1}


def test_crash_rollups_follow_the_guilty_frame_and_regrouping(db: Store) -> None:
    now = time.time()
    load(
        db,
        [
            rec(
                classification="org.clearlinux/crash/clr",
                payload=CRASH,
                machine_id="a",
                ts_reception=now - 10,
            ),
            rec(
                classification="org.clearlinux/crash/clr",
                payload=CRASH,
                machine_id="b",
                build="31001",
                ts_reception=now,
            ),
            rec(classification="org.clearlinux/kernel/warning", payload=OOPS, machine_id="a"),
        ],
    )
    by_guilty = db.run(
        lambda c: dict(
            c.execute(
                select(rollup_guilty.c.guilty_id, func.sum(rollup_guilty.c.count)).group_by(
                    rollup_guilty.c.guilty_id
                )
            ).all()
        )
    )
    assert sorted(by_guilty.values()) == [1, 2]
    seen = _all(db, rollup_guilty)
    crash_rows = [r for r in seen if r[3] == 1 and r[2] in ("31000", "31001")]
    assert {r[2] for r in crash_rows} >= {"31000", "31001"}
    assert len(_all(db, rollup_guilty_machines)) == 3

    def regroup(conn: object) -> None:
        add_to_blacklist(conn, [("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")])  # type: ignore[arg-type]
        recompute_guilty(conn)  # type: ignore[arg-type]
        rebuild_guilty_rollups(conn)  # type: ignore[arg-type]

    before = set(by_guilty)
    db.run_write(regroup)
    after = db.run(
        lambda c: dict(
            c.execute(
                select(rollup_guilty.c.guilty_id, func.sum(rollup_guilty.c.count)).group_by(
                    rollup_guilty.c.guilty_id
                )
            ).all()
        )
    )
    assert sorted(after.values()) == [1, 2]
    assert set(after) != before  # the crash moved to its next frame's group


def test_rebuild_equals_incremental(db: Store) -> None:
    gen = RecordGenerator(seed=7, machines=40, days=10)
    rows = list(gen.rows(600))
    for start in range(0, len(rows), 97):
        load(db, rows[start : start + 97])
    incremental = {t.name: _all(db, t) for t in ROLLUP_TABLES}
    db.run_write(rebuild_rollups)
    rebuilt = {t.name: _all(db, t) for t in ROLLUP_TABLES}
    for name in incremental:
        if name == "rollup_guilty":  # first/last seen are floats: compare with rounding
            assert [r[:4] for r in incremental[name]] == [r[:4] for r in rebuilt[name]]
        else:
            assert incremental[name] == rebuilt[name], name
    assert sum(r[-1] for r in incremental["rollup_daily"]) == 600


def test_week_and_month_keys() -> None:
    from datetime import date

    from downlink.store.queries.period import day_number

    assert week_of(day_number(date(2024, 1, 7))) == day_number(date(2024, 1, 1))
    assert week_of(day_number(date(2024, 1, 1))) == day_number(date(2024, 1, 1))
    assert month_of(day_number(date(2024, 2, 29))) == 202402


def test_migration_rolls_up_records_stored_before_it(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from downlink.sources.clearlinux.consumers import group_crashes
    from downlink.store import inserts, migrate
    from downlink.store.inserts import insert_records
    from downlink.testing.consumers import catch_up

    # Records as 0001 stored them: without the columns later migrations add (0015).
    old = tuple(c for c in inserts.RECORD_COLUMNS if c != "sender_flagged")
    monkeypatch.setattr(inserts, "RECORD_COLUMNS", old)
    # The table is empty: no stored dedup keys to look up (live code selects every column).
    monkeypatch.setattr(inserts, "_stored_by_key", lambda _conn, _keys: {})
    store = Store(Settings(database_url=empty_db_url, batch_wait_ms=1.0))
    try:
        migrate.upgrade(store.engine, "0001")
        crash = {"classification": "org.clearlinux/crash/clr", "payload": CRASH}
        rows = [rec(), rec(machine_id="b"), rec(build="31001"), rec(**crash)]
        rows.append(rec(machine_id="b", **crash))
        mce_classes = ("corrected", "UCNA", "thermal")
        rows += [rec(classification=f"org.clearlinux/mce/{c}", payload=MCE) for c in mce_classes]
        stored = store.run_write(insert_records, rows)
        store.run_write(group_crashes, stored)  # what the writer of that version did
        migrate.upgrade(store.engine, "heads")
        # The consumers start after the records the migrations counted.
        assert catch_up(store) == 0
        assert sum(r[-1] for r in _all(store, rollup_class_daily)) == 8
        assert len(_all(store, rollup_guilty_sketch)) == 1  # backfilled by 0007
        totals = {(b, m): n for _, b, m, n, _, _ in _all(store, rollup_guilty_machine_totals)}
        assert totals == {("31000", "machine-a"): 1, ("31000", "b"): 1}  # backfilled by 0012
        weeks = [(m, n) for _, m, n in _all(store, rollup_mce_machine_weeks)]
        assert weeks == [("machine-a", 2)]  # backfilled by 0017: MCE classes, not thermal
        # Backfilled by clearlinux_0001: every class without the status; the status
        # totals of the MCE classes, not thermal.
        assert sum(r[-1] for r in _all(store, rollup_mce_daily)) == 3
        assert [r[1:] for r in _all(store, rollup_mce_daily)] == [
            (f"org.clearlinux/mce/{c}", "31000", 1) for c in ("UCNA", "corrected", "thermal")
        ]
        ((status, n, first, last),) = _all(store, rollup_mce_statuses)
        assert (status, n, first == last) == ("00010090", 2, True)
        assert [r[:3] for r in _all(store, rollup_mce_build_statuses)] == [
            ("31000", "00010090", 2)
        ]
        from downlink.sources.clearlinux.queries import crashes
        from downlink.store.queries.period import Period

        (top,) = store.run(crashes.top_guilties, Period.past(2), None, 10, False, 0)
        assert (top["total"], top["machines"], top["machines_estimated"]) == (2, 2, True)
        pop = {(g, b): n for g, _, b, n in _all(store, rollup_population)}
        assert pop[("d", "31000")] == 2 and pop[("w", "31001")] == 1
    finally:
        store.close()


def test_sql_rebuild_of_crash_rollups_equals_incremental(db: Store) -> None:
    gen = RecordGenerator(seed=11, machines=30, days=5)
    rows = list(gen.rows(800))
    for start in range(0, len(rows), 150):
        load(db, rows[start : start + 150])
    crash_tables = (
        rollup_guilty,
        rollup_guilty_machines,
        rollup_guilty_machine_totals,
        rollup_guilty_sketch,
        rollup_guilty_build_sketch,
    )
    before = [_all(db, t) for t in crash_tables]
    assert all(before)
    db.run_write(rebuild_guilty_rollups)
    assert [_all(db, t) for t in crash_tables] == before


def test_machine_sketches_estimate_the_exact_counts(db: Store) -> None:
    from downlink.sources.clearlinux.queries import crashes
    from downlink.store.queries.period import Period

    gen = RecordGenerator(seed=5, machines=60, days=6)
    rows = list(gen.rows(900))
    for start in range(0, len(rows), 200):
        load(db, rows[start : start + 200])
    period = Period.past(10)
    exact = db.run(crashes.top_guilties, period, None, 50)
    assert exact and not exact[0]["machines_estimated"]
    estimated = db.run(crashes.top_guilties, period, None, 50, False, 0)
    assert estimated[0]["machines_estimated"]
    assert [g["guilty_id"] for g in estimated] == [g["guilty_id"] for g in exact]
    for e, x in zip(estimated, exact, strict=True):
        assert abs(e["machines"] - x["machines"]) <= max(1, x["machines"] // 20), (e, x)
    build = exact[0]["per_build"] and next(iter(exact[0]["per_build"]))
    by_build = db.run(crashes.top_guilties, period, build, 50, False, 0)
    exact_build = db.run(crashes.top_guilties, period, build, 50)
    assert [g["machines"] for g in by_build] == [g["machines"] for g in exact_build]
