"""The MCE view's status list: the period's statuses most events first, a bounded read.

A status is sender-controlled text (the last 8 hex digits before ``MCGSTATUS``): a
fleet has a few dozen, a hostile sender (or the scale bench) one per record. The list
shows the ``shown`` statuses with the most events in the period (ties by status) and,
when there are more, their remainder as one entry, :data:`OTHER`, a label no status can
take (statuses are hexadecimal or empty). ClickHouse's read lists its counts with the
same rule (:func:`listed`).

The SQL store does not sum the period's ``rollup_mce`` rows (one per status and day:
as many as records, at worst). It ranks statuses from their all-time totals
(``rollup_mce_statuses``, or ``rollup_mce_build_statuses`` for one build): a status's
all-time count bounds its count in any period, and is that count when its first and
last days lie inside the period; when neither lies inside and they do not enclose it,
it has no event in the period. Totals are read most first: one band of the largest
(fewer than ``_BAND`` rows), then one count at a time. Once ``shown`` statuses have more
events in the period than the count being read, no status left can be listed; nor when
the period's events are all accounted for. Of the statuses with a given all-time count,
those inside the period are read in status order, ``shown`` at most (ties are broken
by status); only those straddling one of its ends have their period's events summed
from ``rollup_mce`` (by status: index ``ix_rollup_mce_by_status``), and only while the
list is not full. Past ``_BUDGET`` of those, the period's rows are summed instead, as
before this read existed: the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, and_, func, or_, select

from downlink.sources.clearlinux.mce import MCE_CLASSES
from downlink.sources.clearlinux.tables import (
    rollup_mce,
    rollup_mce_build_statuses,
    rollup_mce_statuses,
)
from downlink.store.queries.period import Period

SHOWN = 20
OTHER = "other"
_BAND = 80  # the first read: every status with more events in all than the 80th
_BUDGET = 2000  # straddling statuses summed before summing the period instead
_LOOKUP_PART = 500


def listed(counts: Mapping[str, int], total: int, shown: int = SHOWN) -> list[tuple[str, int]]:
    """The ``shown`` statuses with the most events (then by status) among ``counts``
    and, if they leave any of the ``total`` events out, (:data:`OTHER`, the rest)."""
    top = sorted(((s, n) for s, n in counts.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))
    top = top[:shown]
    rest = total - sum(n for _, n in top)
    return [*top, (OTHER, rest)] if rest > 0 else top


def status_list(
    conn: Connection, period: Period, build: str | None, total: int, shown: int = SHOWN
) -> list[tuple[str, int]]:
    """The period's status list (:func:`listed`) of the MCE classes, one build or all;
    ``total``: the period's MCE events (of that build)."""
    if total <= 0:
        return []
    counts = _ranked(conn, period, build, total, shown)
    if counts is None:
        counts = _summed(conn, period, build)
    return listed(counts, total, shown)


def _summed(conn: Connection, period: Period, build: str | None) -> dict[str, int]:
    """Every status's events in the period, summed from its ``rollup_mce`` rows."""
    m = rollup_mce.c
    stmt = (
        select(m.status, func.sum(m.count))
        .where(m.day >= period.first, m.day <= period.last, m.classification.in_(MCE_CLASSES))
        .group_by(m.status)
    )
    if build is not None:
        stmt = stmt.where(m.build == build)
    return {str(s): int(n) for s, n in conn.execute(stmt)}


def _ranked(
    conn: Connection, period: Period, build: str | None, total: int, shown: int
) -> dict[str, int] | None:
    """Enough of the period's status counts to list the first ``shown`` exactly (None:
    over budget)."""
    table: Table = rollup_mce_statuses if build is None else rollup_mce_build_statuses
    t = table.c
    scope: list[Any] = [] if build is None else [t.build == build]
    inside = and_(t.first_day >= period.first, t.last_day <= period.last)
    overlaps = and_(t.last_day >= period.first, t.first_day <= period.last)
    counted: dict[str, int] = {}
    budget = _BUDGET

    def add(straddling: list[str]) -> bool:
        nonlocal budget
        budget -= len(straddling)
        if budget < 0:
            return False
        counted.update(_period_counts(conn, period, build, straddling))
        return True

    def full(level: int) -> bool:
        """No status with ``level`` events in all or fewer can be listed."""
        if sum(counted.values()) >= total:
            return True
        ranked = sorted(counted.values(), reverse=True)
        return len(ranked) >= shown and ranked[shown - 1] > level

    floor = conn.execute(
        select(t.count).where(*scope).order_by(t.count.desc()).offset(_BAND - 1).limit(1)
    ).scalar()
    floor = int(floor) if floor is not None else 0
    straddling: list[str] = []
    for status, n, first, last in conn.execute(
        select(t.status, t.count, t.first_day, t.last_day).where(
            *scope, t.count > floor, overlaps
        )
    ):
        if first >= period.first and last <= period.last:
            counted[str(status)] = int(n)
        else:
            straddling.append(str(status))
    if not add(straddling):
        return None
    level = floor
    while level > 0 and not full(level):
        found = conn.execute(
            select(t.status)
            .where(*scope, t.count == level, inside)
            .order_by(t.status)
            .limit(shown)
        ).scalars()
        inside_level = [str(s) for s in found]
        counted.update((s, level) for s in inside_level)
        if level > 1 and len(inside_level) < shown:
            # Fewer than ``shown`` with all their events in the period: those with
            # only some of them (never more than ``level - 1``) may follow them.
            found = conn.execute(
                select(t.status)
                .where(*scope, t.count == level, overlaps,
                       or_(t.first_day < period.first, t.last_day > period.last))
                .limit(budget + 1)
            ).scalars()
            if not add([str(s) for s in found]):
                return None
        below = conn.execute(select(func.max(t.count)).where(*scope, t.count < level)).scalar()
        level = int(below) if below is not None else 0
    return counted


def _period_counts(
    conn: Connection, period: Period, build: str | None, statuses: list[str]
) -> dict[str, int]:
    """The period's events of a few statuses (of the MCE classes, of one build or all)."""
    m = rollup_mce.c
    out: dict[str, int] = {}
    for start in range(0, len(statuses), _LOOKUP_PART):
        part = statuses[start : start + _LOOKUP_PART]
        stmt = (
            select(m.status, func.sum(m.count))
            .where(
                m.status.in_(part),
                m.day >= period.first,
                m.day <= period.last,
                m.classification.in_(MCE_CLASSES),
            )
            .group_by(m.status)
        )
        if build is not None:
            stmt = stmt.where(m.build == build)
        out.update((str(s), int(n)) for s, n in conn.execute(stmt))
    return out
