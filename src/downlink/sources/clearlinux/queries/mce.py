"""Machine-check and thermal events, from the MCE and daily rollups.

Classes follow the patched mcelog that Clear Linux ships (``sources/clearlinux/mce.py``:
``org.clearlinux/mce/`` ``corrected``, ``SRAO``, ``SRAR``, ``UCNA`` and ``thermal``).
Weeks start on Monday and are labelled by the ISO date of that Monday.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Connection, func, select

from downlink.sources.clearlinux.mce import MCE_CLASSES, THERMAL_CLASS
from downlink.sources.clearlinux.queries.mce_statuses import status_list
from downlink.sources.clearlinux.tables import (
    rollup_class_daily,
    rollup_mce_daily,
    rollup_mce_machine_weeks,
    rollup_mce_machines,
)
from downlink.store.queries.period import Period, build_sort_key, day_date


def week_of(day: int) -> int:
    """Return the day number of the Monday starting the week of ``day``."""
    return day - day_date(day).weekday()


def _week_labels(period: Period) -> list[int]:
    return list(range(week_of(period.first), period.last + 1, 7))


def mce_summary(
    conn: Connection, period: Period, build: str | None = None, top: int = 20
) -> dict[str, Any]:
    """Return weekly counts per class, counts by class, build and status, top machines.

    The status list is the period's ``SHOWN`` statuses with the most events and the
    rest as one entry (:mod:`.mce_statuses`). Top machines count whole weeks (their
    rollup is weekly) overlapping the period.
    """
    t = rollup_mce_daily
    rows_of = [t.c.day >= period.first, t.c.day <= period.last, t.c.classification.in_(MCE_CLASSES)]
    if build is not None:
        rows_of.append(t.c.build == build)
    # The period's rows per day, class and build (a range of its primary key), summed
    # here for the weekly lines and the class and build charts: as many rows as days x
    # classes x builds, whatever the number of statuses. The status list ranks statuses
    # from their totals (queries.mce_statuses) instead of summing one row per status
    # and day.
    weeks = _week_labels(period)
    weekly: dict[str, list[int]] = {c: [0] * len(weeks) for c in MCE_CLASSES}
    totals: dict[str, Counter[str]] = {"class": Counter(), "build": Counter()}
    for day, cls, b, n in conn.execute(
        select(t.c.day, t.c.classification, t.c.build, t.c.count).where(*rows_of)
    ):
        weekly[str(cls)][(week_of(int(day)) - weeks[0]) // 7] += int(n)
        totals["class"][str(cls)] += int(n)
        totals["build"][str(b)] += int(n)

    def grouped(what: str) -> list[tuple[str, int]]:
        return sorted(totals[what].items(), key=lambda kv: (-kv[1], kv[0]))

    by_build = sorted(grouped("build"), key=lambda kv: build_sort_key(kv[0]))
    m = rollup_mce_machines
    total = func.sum(m.c.count)
    # On SQLite ``week + 0`` keeps the planner off the primary key (week first), which it
    # prefers until ANALYZE has run: the covering (machine_id, ...) index then gives
    # the totals in machine order without sorting the period's rows (600 -> 80 ms at
    # 10M records). PostgreSQL plans this well by itself.
    week: Any = m.c.week + 0 if conn.dialect.name == "sqlite" else m.c.week
    conditions = [
        week >= week_of(period.first),
        week <= period.last,
        m.c.classification.in_(MCE_CLASSES),
    ]
    if build is not None:
        conditions.append(m.c.build == build)
    # Totals for every machine, distinct builds only for the top ones: a COUNT(DISTINCT)
    # per machine over the whole period was most of this view's time at 10M records.
    # Every build: from the per-(week, machine) totals, one row per machine and week.
    if build is None:
        w = rollup_mce_machine_weeks
        w_total = func.sum(w.c.count)
        w_week: Any = w.c.week + 0 if conn.dialect.name == "sqlite" else w.c.week
        leading = (
            select(w.c.machine_id, w_total)
            .where(w_week >= week_of(period.first), w_week <= period.last)
            .group_by(w.c.machine_id)
            .order_by(w_total.desc(), w.c.machine_id)
        )
    else:
        leading = (
            select(m.c.machine_id, total)
            .where(*conditions)
            .group_by(m.c.machine_id)
            .order_by(total.desc(), m.c.machine_id)
        )
    leaders = [(str(mid), int(n)) for mid, n in conn.execute(leading.limit(top))]
    builds: dict[str, int] = {}
    if leaders:
        bq = (
            select(m.c.machine_id, func.count(func.distinct(m.c.build)))
            .where(*conditions, m.c.machine_id.in_([mid for mid, _ in leaders]))
            .group_by(m.c.machine_id)
        )
        builds = {str(mid): int(b) for mid, b in conn.execute(bq)}
    return {
        "weeks": [day_date(w).isoformat() for w in weeks],
        "weekly": weekly,
        "by_class": grouped("class"),
        "by_build": by_build,
        "by_status": status_list(conn, period, build, sum(totals["class"].values())),
        "top_machines": [
            {"machine_id": mid, "count": n, "builds": builds.get(mid, 0)} for mid, n in leaders
        ],
    }


def thermal_weekly(conn: Connection, period: Period) -> dict[str, Any]:
    """Return thermal events per week of the period."""
    t = rollup_class_daily
    weeks = _week_labels(period)
    counts = [0] * len(weeks)
    stmt = period.where(
        select(t.c.day, func.sum(t.c.count))
        .where(t.c.classification == THERMAL_CLASS)
        .group_by(t.c.day),
        t,
    )
    for day, n in conn.execute(stmt):
        counts[(week_of(int(day)) - weeks[0]) // 7] += int(n)
    return {"weeks": [day_date(w).isoformat() for w in weeks], "counts": counts}
