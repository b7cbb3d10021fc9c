"""Unique machines per OS build over time (day, week or month buckets).

Daily figures come straight from ``rollup_population``. A machine seen on several days
of a week counts once in that week, so week and month buckets count distinct ids in
``rollup_machines`` (one row per day, build and machine; far smaller than ``records``).
Clear Linux clients rotate their machine id every few days, so every figure is an
upper bound on real machines, looser for longer buckets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from downlink.store.queries.period import Period, build_sort_key, day_date, day_number
from downlink.store.tables import rollup_machines, rollup_population

BUCKETS = ("day", "week", "month")


@dataclass(frozen=True)
class Bucket:
    """One time bucket: a label and its first and last day numbers."""

    label: str
    first: int
    last: int


def buckets(period: Period, size: str) -> list[Bucket]:
    """Split the period into day, ISO week (Monday first) or calendar month buckets."""
    if size not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    return list(_buckets(period, size))


def _buckets(period: Period, size: str) -> Iterator[Bucket]:
    day = period.first
    while day <= period.last:
        d = day_date(day)
        if size == "day":
            end = day
            label = d.isoformat()
        elif size == "week":
            end = day + (6 - d.weekday())
            year, week, _ = d.isocalendar()
            label = f"{year}-W{week:02d}"
        else:
            nxt = (
                d.replace(year=d.year + 1, month=1)
                if d.month == 12
                else d.replace(month=d.month + 1)
            )
            end = day_number(nxt.replace(day=1)) - 1
            label = f"{d.year}-{d.month:02d}"
        end = min(end, period.last)
        yield Bucket(label, day, end)
        day = end + 1


def machines_per_build(
    conn: Connection, period: Period, size: str, build: str | None = None
) -> dict[str, object]:
    """Return ``{"buckets": [...], "builds": [...], "series": {build: [n per bucket]}}``."""
    parts = buckets(period, size)
    counts: dict[str, list[int]] = {}
    if size == "day":
        t = rollup_population
        stmt = period.where(select(t.c.day, t.c.build, t.c.machines), t)
        if build is not None:
            stmt = stmt.where(t.c.build == build)
        index = {b.first: i for i, b in enumerate(parts)}
        for day, b, n in conn.execute(stmt):
            counts.setdefault(str(b), [0] * len(parts))[index[int(day)]] = int(n)
    else:
        m = rollup_machines
        for i, part in enumerate(parts):
            q = (
                select(m.c.build, func.count(func.distinct(m.c.machine_id)))
                .where(m.c.day >= part.first, m.c.day <= part.last)
                .group_by(m.c.build)
            )
            if build is not None:
                q = q.where(m.c.build == build)
            for b, n in conn.execute(q):
                counts.setdefault(str(b), [0] * len(parts))[i] = int(n)
    builds = sorted(counts, key=build_sort_key)
    return {
        "bucket": size,
        "buckets": [p.label for p in parts],
        "builds": builds,
        "series": {b: counts[b] for b in builds},
    }
