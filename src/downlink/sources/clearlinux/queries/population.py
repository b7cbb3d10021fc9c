"""Unique machines per OS build over time (day, week or month buckets).

Figures come straight from ``rollup_population``, which the ingest processor keeps per
day, ISO week and calendar month: a machine seen on several days of a week counts once
in that week. Week and month buckets always cover whole calendar weeks and months,
even where the chosen period starts or ends inside one. Clear Linux clients rotate
their machine id every few days, so every figure is an upper bound on real machines,
looser for longer buckets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, select

from downlink.sources.clearlinux.tables import rollup_population
from downlink.store.queries.period import Period, build_sort_key, day_date, day_number

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


_GRAIN = {"day": "d", "week": "w", "month": "m"}


def _period_key(size: str, first_day: int) -> int:
    d = day_date(first_day)
    if size == "month":
        return d.year * 100 + d.month
    return first_day  # a day, or the Monday starting a week


def machines_per_build(
    conn: Connection, period: Period, size: str, build: str | None = None
) -> dict[str, object]:
    """Return ``{"buckets": [...], "builds": [...], "series": {build: [n per bucket]}}``."""
    parts = buckets(period, size)
    # Buckets start where the period starts; the stored week/month keys are aligned.
    index: dict[int, int] = {}
    for i, part in enumerate(parts):
        first = part.first if size != "week" else part.first - day_date(part.first).weekday()
        index[_period_key(size, first)] = i
    t = rollup_population
    stmt = select(t.c.period, t.c.build, t.c.machines).where(
        t.c.grain == _GRAIN[size], t.c.period.in_(list(index))
    )
    if build is not None:
        stmt = stmt.where(t.c.build == build)
    counts: dict[str, list[int]] = {}
    for key, b, n in conn.execute(stmt):
        counts.setdefault(str(b), [0] * len(parts))[index[int(key)]] = int(n)
    builds = sorted(counts, key=build_sort_key)
    return {
        "bucket": size,
        "buckets": [p.label for p in parts],
        "builds": builds,
        "series": {b: counts[b] for b in builds},
    }
