"""One crash group spread over machines, builds and days, with its answers worked out.

Shared by the crash group tests: ``rows`` go in through the writer's processors, and
``expected_machines`` ranks the group's (build, machine) pairs of a period by brute
force from the rows, as the crash group page must.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from downlink.sources.clearlinux.rollups import DAY
from downlink.store.queries.period import Period, today
from tests.web.helpers import CRASH, rec

Row = dict[str, Any]
HISTORY_DAYS = 10


def crash_rows(singles: int, repeaters: int = 60, seed: int = 7) -> list[Row]:
    """Crashes of one group over the last ``HISTORY_DAYS`` days (today included).

    ``repeaters`` machines crash 1 to 9 times each on random days and two builds (so
    many straddle any shorter period); ``singles`` machines crash once each.
    """
    rnd = random.Random(seed)
    first = today() - HISTORY_DAYS + 1
    rows: list[Row] = []

    def crash(machine: str, build: str, day: int) -> None:
        ts = float(day * DAY + 60 + rnd.randrange(3000))
        rows.append(
            rec(
                classification="org.clearlinux/crash/clr",
                payload=CRASH,
                severity=3,
                machine_id=machine,
                build=build,
                ts_capture=ts,
                ts_reception=ts,
            )
        )

    for i in range(repeaters):
        for _ in range(1 + i % 9):
            build = "31000" if rnd.random() < 0.7 else "31001"
            crash(f"r{i:03d}", build, first + rnd.randrange(HISTORY_DAYS))
    for j in range(singles):
        crash(f"s{j:05d}", "31000" if j % 3 else "31001", first + j % HISTORY_DAYS)
    rnd.shuffle(rows)
    return rows


def _in(row: Row, period: Period) -> bool:
    return period.first <= int(row["ts_reception"] // DAY) <= period.last


def expected_machines(rows: list[Row], period: Period) -> list[Row]:
    """Every (build, machine) of the period, most crashes first, then machine, build."""
    counts = Counter((r["build"], r["machine_id"]) for r in rows if _in(r, period))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0]))
    return [{"build": b, "machine_id": m, "records": n} for (b, m), n in ranked]


def expected_builds(rows: list[Row], period: Period) -> dict[str, tuple[int, int]]:
    """Build -> (distinct machines, crashes) of the period."""
    machines: dict[str, set[str]] = {}
    crashes: Counter[str] = Counter()
    for r in rows:
        if _in(r, period):
            machines.setdefault(r["build"], set()).add(r["machine_id"])
            crashes[r["build"]] += 1
    return {b: (len(machines[b]), crashes[b]) for b in machines}


def expected_machine_count(rows: list[Row], period: Period) -> int:
    """Distinct machines of the period."""
    return len({r["machine_id"] for r in rows if _in(r, period)})
