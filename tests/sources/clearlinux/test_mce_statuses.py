"""The MCE status list read from the status totals equals a count of the records."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from sqlalchemy import select

from downlink.sources.clearlinux.mce import MCE_CLASSES, THERMAL_CLASS
from downlink.sources.clearlinux.queries import mce_statuses
from downlink.sources.clearlinux.queries.mce import mce_summary
from downlink.sources.clearlinux.queries.mce_statuses import OTHER, listed, status_list
from downlink.sources.clearlinux.rollups import DAY, day_of, mce_status
from downlink.store.database import Store
from downlink.store.queries.period import Period
from downlink.store.tables import records
from tests.web.helpers import load, rec


def test_listed_keeps_the_most_and_sums_the_rest() -> None:
    counts = {"b": 3, "a": 3, "c": 5, "d": 1, "e": 0}
    assert listed(counts, 12, 3) == [("c", 5), ("a", 3), ("b", 3), (OTHER, 1)]
    assert listed(counts, 12, 4) == [("c", 5), ("a", 3), ("b", 3), ("d", 1)]
    assert listed({}, 0) == []


def _payload(status: str) -> str:
    return f"CPU 1 BANK 4\nSTATUS {status} MCGSTATUS 0\n"


def _fleet(now: float) -> list[dict[str, object]]:
    """Machine checks over 50 days: a few statuses with many events (two of them tied),
    some with a handful spread over days (straddling most periods), many with one, a
    payload without status; thermal events with statuses of their own (not counted)."""
    rng = random.Random(3)
    rows: list[dict[str, object]] = []

    def add(status: str, n: int, days: tuple[int, int], build: str = "31000") -> None:
        for _ in range(n):
            age = rng.uniform(*days)
            rows.append(rec(classification=rng.choice(MCE_CLASSES), payload=_payload(status),
                            build=build, machine_id=f"m{rng.randrange(9)}",
                            ts_reception=now - age * DAY))

    add("cc00008000010091", 30, (0, 50))
    add("9c00004000010090", 20, (0, 50))
    add("bd80000000100134", 20, (0, 50), build="31001")
    add("8c00004000010150", 9, (20, 30))
    for i in range(40):
        add(f"{rng.getrandbits(64):016x}", rng.choice((2, 3, 4)), (i, i + 8),
            build=rng.choice(("31000", "31001")))
    for _ in range(150):
        add(f"{rng.getrandbits(64):016x}", 1, (0, 50), build=rng.choice(("31000", "31001")))
    for _ in range(3):
        rows.append(rec(classification="org.clearlinux/mce/SRAR", payload="garbled",
                        ts_reception=now - rng.uniform(0, 50) * DAY))
        rows.append(rec(classification=THERMAL_CLASS, payload=_payload("00000000deadbeef"),
                        ts_reception=now - rng.uniform(0, 50) * DAY))
    rng.shuffle(rows)
    return rows


def _counted(store: Store, period: Period, build: str | None) -> Counter[str]:
    r = records.c
    found = store.run(lambda c: c.execute(
        select(r.classification, r.build, r.ts_reception, r.payload)).all())
    out: Counter[str] = Counter()
    for cls, b, ts, payload in found:
        if cls in MCE_CLASSES and period.first <= day_of(ts) <= period.last:
            if build is None or b == build:
                out[mce_status(payload or "")] += 1
    return out


@pytest.mark.parametrize(("band", "budget"), [(80, 2000), (2, 2000), (2, 0)])
def test_status_list_equals_a_count_of_the_records(
    db: Store, monkeypatch: pytest.MonkeyPatch, band: int, budget: int
) -> None:
    monkeypatch.setattr(mce_statuses, "_BAND", band)
    monkeypatch.setattr(mce_statuses, "_BUDGET", budget)
    now = time.time()
    rows = _fleet(now)
    for start in range(0, len(rows), 150):
        load(db, rows[start:start + 150])
    today = day_of(now)
    periods = [Period(today - 60, today), Period(today - 10, today),
               Period(today - 30, today - 15), Period(today - 24, today - 23)]
    for period in periods:
        for build in (None, "31000", "31001"):
            want = _counted(db, period, build)
            total = sum(want.values())
            for shown in (1, 3, 5, 20, 1000):
                got = db.run(status_list, period, build, total, shown)
                assert got == listed(want, total, shown), (period, build, shown)
        summary = db.run(mce_summary, period)
        want = _counted(db, period, None)
        assert summary["by_status"] == listed(want, sum(want.values()))
        assert sum(n for _, n in summary["by_class"]) == sum(want.values())
