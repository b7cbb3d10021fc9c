"""Crash groups ("guilties"): top of a period, details, backtraces and the blacklist."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, case, func, select, update

from downlink.sources.clearlinux.backtrace import parse_crash
from downlink.sources.clearlinux.tables import (
    guilty,
    guilty_blacklist,
    rollup_guilty,
    rollup_guilty_build_sketch,
    rollup_guilty_machine_totals,
    rollup_guilty_machines,
    rollup_guilty_sketch,
)
from downlink.store import sketch
from downlink.store.queries.period import Period, build_sort_key
from downlink.store.tables import records

Row = dict[str, Any]

# Up to this many crash records in the groups shown, machines are counted exactly
# (a COUNT(DISTINCT) over about one rollup row per record: about 1 us a row, and the
# crash group page counts twice: in all and per build); above it they are estimated
# from the HyperLogLog sketches (about 1.6 % relative error, bounded time). The
# default of the setting DOWNLINK_CRASH_EXACT_MACHINES, which the pages pass. At 10M
# records the top group's week holds about 40k crashes: counted exactly, its page cost
# 74 ms of CPU on SQLite (three reads of the same rows: machines, per build, ranking),
# estimated 31 ms (0.9 % off); 20k keeps every exact page well under 100 ms.
EXACT_MACHINES_MAX = 20_000


def _exact_machines_by(
    conn: Connection, key: str, period: Period, *conditions: ColumnElement[bool]
) -> dict[Any, int]:
    """Distinct machines of the matching rollup rows of the period, per ``key`` column."""
    m = rollup_guilty_machines
    stmt = period.where(
        select(m.c[key], func.count(func.distinct(m.c.machine_id)))
        .where(*conditions)
        .group_by(m.c[key]),
        m,
    )
    return {k: int(n) for k, n in conn.execute(stmt)}


def _estimated_machines_by(
    conn: Connection, table: Table, key: str, period: Period, *conditions: ColumnElement[bool]
) -> dict[Any, int]:
    """The same from the period's sketches of ``table``: their union per ``key`` column."""
    stmt = period.where(select(table.c[key], table.c.registers).where(*conditions), table)
    blobs: dict[Any, list[bytes]] = {}
    for k, blob in conn.execute(stmt):
        blobs.setdefault(k, []).append(bytes(blob))
    return {k: sketch.estimate(sketch.union(parts)) for k, parts in blobs.items()}


def _exact_machines(
    conn: Connection, ids: list[int], period: Period, build: str | None
) -> dict[int, int]:
    m = rollup_guilty_machines.c
    where = [m.guilty_id.in_(ids)] + ([m.build == build] if build is not None else [])
    found = _exact_machines_by(conn, "guilty_id", period, *where)
    return {int(g): n for g, n in found.items()}


def _estimated_machines(
    conn: Connection, ids: list[int], period: Period, build: str | None
) -> dict[int, int]:
    t = rollup_guilty_sketch if build is None else rollup_guilty_build_sketch
    where = [t.c.guilty_id.in_(ids)] + ([t.c.build == build] if build is not None else [])
    found = _estimated_machines_by(conn, t, "guilty_id", period, *where)
    return {int(g): n for g, n in found.items()}


def machines_of_groups(
    conn: Connection,
    ids: list[int],
    period: Period,
    build: str | None,
    records: int,
    exact_max: int = EXACT_MACHINES_MAX,
) -> tuple[dict[int, int], bool]:
    """Return distinct machines per group over the period, and whether they are estimates.

    ``records`` is how many crash records the groups have in the period: the cost of
    the exact count, made up to ``exact_max`` records.
    """
    if records <= exact_max:
        return _exact_machines(conn, ids, period, build), False
    return _estimated_machines(conn, ids, period, build), True


def machines_of_builds(
    conn: Connection,
    guilty_id: int,
    period: Period,
    records: int,
    exact_max: int = EXACT_MACHINES_MAX,
) -> tuple[dict[str, int], bool]:
    """Return one group's distinct machines per build over the period, and whether estimated.

    The same rule as :func:`machines_of_groups` (``records``: the group's crash records
    in the period), from the per-(day, group, build) sketches when estimated.
    """
    if records <= exact_max:
        m = rollup_guilty_machines.c
        found = _exact_machines_by(conn, "build", period, m.guilty_id == guilty_id)
        return {str(b): n for b, n in found.items()}, False
    t = rollup_guilty_build_sketch
    found = _estimated_machines_by(conn, t, "build", period, t.c.guilty_id == guilty_id)
    return {str(b): n for b, n in found.items()}, True


def top_guilties(
    conn: Connection,
    period: Period,
    build: str | None = None,
    limit: int = 50,
    include_hidden: bool = False,
    exact_max: int = EXACT_MACHINES_MAX,
) -> list[Row]:
    """Return the most frequent visible (or, with ``include_hidden``, all) crash groups
    of the period, with their spread (``hide`` says whether a group is hidden).

    Each item: guilty id, function, module, comment, total, machines, builds (count of
    distinct builds), first_seen, last_seen and per_build ``{build: count}``.
    ``machines_estimated`` says whether ``machines`` is exact or a sketch estimate
    (see :func:`machines_of_groups`). ``new_in`` and ``regressed_in`` name a build
    against the builds before it in the period (:func:`build_news`; None: neither),
    and ``daily`` holds the group's crashes per day of the period (:func:`daily_crashes`).

    One pass over the period's ``rollup_guilty`` rows (read from its covering index),
    summed per (group, build) in SQL and ranked here: totals, spread, per-build counts
    and the cost of an exact machine count all come from the same few thousand rows.
    """
    r = rollup_guilty
    cells = period.where(
        select(
            r.c.guilty_id,
            r.c.build,
            func.sum(r.c.count),
            func.min(r.c.first_seen),
            func.max(r.c.last_seen),
        ).group_by(r.c.guilty_id, r.c.build),
        r,
    )
    hidden = hidden_groups(conn)
    ranked = rank_groups(conn.execute(cells), hidden, build, limit, include_hidden)
    if not ranked.ids:
        return []
    # The exact count scans the groups' rollup rows of the period, of every build.
    machines, estimated = machines_of_groups(
        conn, ranked.ids, period, build, ranked.scanned, exact_max
    )
    daily = daily_crashes(conn, ranked.ids, period, build)
    return ranked.items(group_labels(conn, ranked.ids), hidden, machines, estimated, daily,
                        period)


def hidden_groups(conn: Connection) -> set[int]:
    """The ids of the hidden crash groups."""
    return set(conn.execute(select(guilty.c.id).where(guilty.c.hide.is_(True))).scalars())


def group_labels(conn: Connection, ids: list[int]) -> dict[int, Any]:
    """Function, module and comment of the crash groups ``ids`` (those that exist)."""
    stmt = select(guilty.c.id, guilty.c.function, guilty.c.module, guilty.c.comment).where(
        guilty.c.id.in_(ids)
    )
    return {int(row.id): row for row in conn.execute(stmt)}


@dataclass
class Ranking:
    """The top crash groups of a period, ranked from their (group, build) cells."""

    groups: dict[int, dict[str, Any]]
    every_build: dict[int, int]  # crash rows of the group in the period, any build
    builds_of: dict[int, set[str]]  # the group's builds in the period
    period_builds: set[str]  # builds with crashes of any group in the period
    ids: list[int]  # the groups shown, most crashes first

    @property
    def scanned(self) -> int:
        """Crash records of the shown groups in the period, of every build (the cost of
        an exact machine count)."""
        return sum(self.every_build[gid] for gid in self.ids)

    def items(
        self,
        labels: dict[int, Any],
        hidden: set[int],
        machines: dict[int, int],
        estimated: bool,
        daily: dict[int, list[int]],
        period: Period,
    ) -> list[Row]:
        """The items of :func:`top_guilties` (groups without a label are left out)."""
        ordered = sorted(self.period_builds, key=build_sort_key)
        items: list[Row] = []
        for gid in self.ids:
            g, label = self.groups[gid], labels.get(gid)
            if label is None:  # rollup rows of a group deleted meanwhile
                continue
            items.append(
                {
                    "guilty_id": gid,
                    "function": label.function,
                    "module": label.module,
                    "comment": label.comment,
                    "hide": gid in hidden,
                    "total": g["total"],
                    "builds": len(g["per_build"]),
                    "first_seen": g["first_seen"],
                    "last_seen": g["last_seen"],
                    "machines": machines.get(gid, 0),
                    "machines_estimated": estimated,
                    "per_build": dict(
                        sorted(g["per_build"].items(), key=lambda kv: build_sort_key(kv[0]))
                    ),
                    **build_news(self.builds_of[gid], ordered),
                    "daily": daily.get(gid, [0] * period.days),
                }
            )
        return items


def rank_groups(
    cells: Iterable[Sequence[Any]],
    hidden: set[int],
    build: str | None,
    limit: int,
    include_hidden: bool,
) -> Ranking:
    """Rank the groups of ``cells``, (guilty_id, build, crashes, first_seen, last_seen)
    each: most crashes (of ``build``, if given) first, then by id."""
    groups: dict[int, dict[str, Any]] = {}
    every_build: dict[int, int] = {}
    builds_of: dict[int, set[str]] = {}
    period_builds: set[str] = set()
    for gid_, b, n_, first, last in cells:
        gid, n = int(gid_), int(n_)
        period_builds.add(str(b))
        if gid in hidden and not include_hidden:
            continue
        every_build[gid] = every_build.get(gid, 0) + n
        builds_of.setdefault(gid, set()).add(str(b))
        if build is not None and b != build:
            continue
        g = groups.get(gid)
        if g is None:
            groups[gid] = {"total": n, "first_seen": first, "last_seen": last, "per_build": {}}
            g = groups[gid]
        else:
            g["total"] += n
            g["first_seen"] = min(g["first_seen"], first)
            g["last_seen"] = max(g["last_seen"], last)
        g["per_build"][str(b)] = n
    ids = sorted(groups, key=lambda gid: (-groups[gid]["total"], gid))[:limit]
    return Ranking(groups, every_build, builds_of, period_builds, ids)


def build_news(group_builds: set[str], period_builds: list[str]) -> dict[str, str | None]:
    """Which build a group is new in, or regressed in, within a period.

    ``period_builds``: every build with crashes (of any group) in the period, oldest
    first. ``new_in``: the group's oldest build, when older builds had crashes in the
    period but none of this group. ``regressed_in``: the newest build with crashes of
    the group whose previous build had crashes but none of the group, while an older
    build had some (fixed, then back).
    """
    seen = [b in group_builds for b in period_builds]
    if not any(seen):
        return {"new_in": None, "regressed_in": None}
    first = seen.index(True)
    new_in = period_builds[first] if first > 0 else None
    regressed_in = None
    for i in range(len(seen) - 1, first + 1, -1):
        if seen[i] and not seen[i - 1]:
            regressed_in = period_builds[i]
            break
    return {"new_in": new_in, "regressed_in": regressed_in}


def daily_crashes(
    conn: Connection, ids: list[int], period: Period, build: str | None = None
) -> dict[int, list[int]]:
    """Crashes per day of the period (oldest first, zeros included) of each group of ``ids``.

    Equalities only on ``rollup_guilty``'s primary key (day, guilty_id, build): the day
    as an IN list, so that each (day, group) pair is one seek reading only those groups'
    rows, not the whole period's (the top groups' sparklines).
    """
    if not ids:
        return {}
    r = rollup_guilty.c
    days = list(range(period.first, period.last + 1))
    stmt = select(r.guilty_id, r.day, func.sum(r.count)).where(
        r.day.in_(days), r.guilty_id.in_(ids)
    )
    if build is not None:
        stmt = stmt.where(r.build == build)
    out = {gid: [0] * len(days) for gid in ids}
    for gid, day, n in conn.execute(stmt.group_by(r.guilty_id, r.day)):
        out[int(gid)][int(day) - period.first] = int(n)
    return out


def get_guilty(conn: Connection, guilty_id: int) -> Row | None:
    """Return one crash group, or None."""
    row = conn.execute(select(guilty).where(guilty.c.id == guilty_id)).mappings().first()
    return dict(row) if row is not None else None


@dataclass(frozen=True)
class GroupSpread:
    """One crash group over a period: its crashes and machines, in all and per build."""

    records: int
    machines: int
    machines_estimated: bool  # machines (here and per build) are sketch estimates
    builds: list[Row]  # {build, machines, records}, newest build first


def guilty_spread(
    conn: Connection, guilty_id: int, period: Period, exact_max: int = EXACT_MACHINES_MAX
) -> GroupSpread:
    """Return how many crashes and machines one group has in the period, per build.

    Crashes per build come from the period's ``rollup_guilty`` rows; machines are
    counted as the crashes view counts them (:func:`machines_of_groups`): exactly up to
    ``exact_max`` crash records, else estimated from the sketches.
    """
    r = rollup_guilty
    per_build = period.where(
        select(r.c.build, func.sum(r.c.count))
        .where(r.c.guilty_id == guilty_id)
        .group_by(r.c.build),
        r,
    )
    crashes = {str(b): int(n) for b, n in conn.execute(per_build)}
    total = sum(crashes.values())
    if not total:
        return GroupSpread(0, 0, False, [])
    machines, estimated = machines_of_groups(conn, [guilty_id], period, None, total, exact_max)
    per_build_machines, _ = machines_of_builds(conn, guilty_id, period, total, exact_max)
    builds: list[Row] = [
        {"build": b, "machines": per_build_machines.get(b, 0), "records": n}
        for b, n in crashes.items()
    ]
    builds.sort(key=lambda x: build_sort_key(x["build"]), reverse=True)
    return GroupSpread(total, machines.get(guilty_id, 0), estimated, builds)


# Ranking a group's machines of a period (guilty_machines): summing its rollup rows of
# the period costs about one row per crash; the all-time totals (_ranked_machines) cost
# about the rows shown when the period holds the group's whole history, and more the
# more of its machines' crashes straddle the period's ends.
RANK_FROM_TOTALS_MIN = 5_000  # crashes in the period: below, summing is cheap anyway
_LOOKUP_PART = 500


def guilty_machines(
    conn: Connection,
    guilty_id: int,
    period: Period,
    limit: int | None = None,
    offset: int = 0,
    records: int | None = None,
) -> list[Row]:
    """Return (build, machine_id, records) of one group in the period.

    Most crashes first (then machine id, build); ``limit`` and ``offset`` page through
    them: the top group of a large fleet hits tens of thousands of machines.
    ``records`` is the group's crash records in the period, if known (the cost of
    summing them). A page is ranked from the all-time totals instead, with the same
    answer, when the period holds the group's whole history, or has over
    ``EXACT_MACHINES_MAX`` crashes (then giving up after reading half as many totals
    as there are crashes, and summing).
    """
    if limit is not None and records is not None and records >= RANK_FROM_TOTALS_MIN:
        first, last = _history(conn, guilty_id)
        if period.first <= first and last <= period.last:
            ranked = _ranked_machines(conn, guilty_id, period, limit, offset, None)
        elif records > EXACT_MACHINES_MAX:
            ranked = _ranked_machines(conn, guilty_id, period, limit, offset, records // 2)
        else:
            ranked = None
        if ranked is not None:
            return ranked
    return _summed_machines(conn, guilty_id, period, limit, offset)


def _history(conn: Connection, guilty_id: int) -> tuple[int, int]:
    """First and last day with crashes of a group (two seeks in its rollup index)."""
    m = rollup_guilty_machines.c
    days = select(m.day).where(m.guilty_id == guilty_id).limit(1)
    first = conn.execute(days.order_by(m.day)).scalar()
    last = conn.execute(days.order_by(m.day.desc())).scalar()
    if first is None or last is None:
        return 0, -1
    return int(first), int(last)


def _summed_machines(
    conn: Connection, guilty_id: int, period: Period, limit: int | None, offset: int
) -> list[Row]:
    m = rollup_guilty_machines
    n = func.sum(m.c.count)
    stmt = period.where(
        select(m.c.build, m.c.machine_id, n.label("records"))
        .where(m.c.guilty_id == guilty_id)
        .group_by(m.c.build, m.c.machine_id)
        .order_by(n.desc(), m.c.machine_id, m.c.build)
        .offset(offset),
        m,
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        {"build": str(b), "machine_id": str(mid), "records": int(k)}
        for b, mid, k in conn.execute(stmt)
    ]


def _ranked_machines(
    conn: Connection,
    guilty_id: int,
    period: Period,
    limit: int,
    offset: int,
    budget: int | None,
) -> list[Row] | None:
    """One page of :func:`guilty_machines` from the all-time totals (None: over budget).

    A machine's all-time count of the group bounds its count in the period, and is
    that count when its first and last days lie in the period (0 when neither does
    and they do not enclose it; otherwise its rows of the period are summed). The
    totals are read by count, highest first, in bands: once every machine with an
    all-time count of at least ``floor`` is read and ``offset + limit`` of them have at
    least ``floor`` crashes in the period, no machine left can rank before them, ties
    included. Machines with one crash in all come last, in machine order, so past the
    others a page of them is read straight from the index. ``budget``: the most totals
    rows to read before giving up (the caller then sums the period's rows instead);
    None: no limit.
    """
    t = rollup_guilty_machine_totals.c
    want = offset + limit
    counted: list[tuple[int, str, str]] = []  # (crashes in the period, machine, build)
    read = 0
    ceiling: int | None = None

    def read_band(floor: int) -> None:
        nonlocal read, ceiling
        band = select(t.build, t.machine_id, t.count, t.first_day, t.last_day).where(
            t.guilty_id == guilty_id, t.count >= floor
        )
        if ceiling is not None:
            band = band.where(t.count < ceiling)
        straddling: list[tuple[str, str]] = []
        for b, mid, n, first, last in conn.execute(band):
            read += 1
            if last < period.first or first > period.last:
                continue
            if first >= period.first and last <= period.last:
                counted.append((int(n), str(mid), str(b)))
            else:
                straddling.append((str(b), str(mid)))
        counted.extend(_period_counts(conn, guilty_id, period, straddling))
        ceiling = floor

    def page() -> list[Row]:
        counted.sort(key=lambda c: (-c[0], c[1], c[2]))
        return [{"build": b, "machine_id": m, "records": n} for n, m, b in counted[offset:want]]

    while True:
        nth = conn.execute(
            select(t.count)
            .where(t.guilty_id == guilty_id)
            .order_by(t.count.desc())
            .offset(2 * read + want - 1)
            .limit(1)
        ).scalar()
        floor = max(1, int(nth)) if nth is not None else 1
        if ceiling is None or max(floor, 2) < ceiling:
            read_band(max(floor, 2))
        if sum(1 for c in counted if c[0] >= (ceiling or 1)) >= want:
            return page()
        if floor == 1:
            break
        if budget is not None and read > budget:
            return None
    # Every machine with two crashes or more in all is counted and too few have two or
    # more in the period: the rest of the page has one crash each, in machine order.
    if any(c[0] == 1 for c in counted):
        read_band(1)  # some straddle the period with one crash in it: merge them all
        return page()
    above = page()[: max(0, len(counted) - offset)]
    skip = max(0, offset - len(counted))
    singles = (
        select(t.build, t.machine_id)
        .where(
            t.guilty_id == guilty_id,
            t.count == 1,
            t.first_day >= period.first,
            t.first_day <= period.last,
        )
        .order_by(t.machine_id, t.build)
        .offset(skip)
        .limit(limit - len(above))
    )
    return above + [
        {"build": str(b), "machine_id": str(m), "records": 1} for b, m in conn.execute(singles)
    ]


def _period_counts(
    conn: Connection, guilty_id: int, period: Period, pairs: list[tuple[str, str]]
) -> list[tuple[int, str, str]]:
    """Crashes in the period of (build, machine) pairs of one group (none: left out).

    Equalities only (group, machines), so that one index matches every condition:
    the machines' rows of every day are read and those of the period summed; with a
    range on the day, a planner may read the group's whole period instead.
    """
    m = rollup_guilty_machines.c
    wanted = set(pairs)
    machines = sorted({mid for _, mid in pairs})
    in_period = case((and_(m.day >= period.first, m.day <= period.last), m.count), else_=0)
    out: list[tuple[int, str, str]] = []
    for start in range(0, len(machines), _LOOKUP_PART):
        part = machines[start : start + _LOOKUP_PART]
        stmt = (
            select(m.build, m.machine_id, func.sum(in_period))
            .where(m.guilty_id == guilty_id, m.machine_id.in_(part))
            .group_by(m.machine_id, m.build)
        )
        for b, mid, n in conn.execute(stmt):
            if n and (str(b), str(mid)) in wanted:
                out.append((int(n), str(mid), str(b)))
    return out


def guilty_records(
    conn: Connection,
    guilty_id: int,
    *,
    machine_id: str | None = None,
    build: str | None = None,
    period: Period | None = None,
    limit: int = 50,
) -> list[Row]:
    """Return the newest records of one crash group (optionally one machine/build/period)."""
    stmt = select(records).where(records.c.guilty_id == guilty_id)
    if period is not None:
        stmt = stmt.where(
            records.c.ts_reception >= period.first * 86400.0,
            records.c.ts_reception < (period.last + 1) * 86400.0,
        )
    if machine_id is not None:
        stmt = stmt.where(records.c.machine_id == machine_id)
    if build is not None:
        stmt = stmt.where(records.c.build == build)
    stmt = stmt.order_by(records.c.id.desc()).limit(limit)
    return [dict(x) for x in conn.execute(stmt).mappings()]


PROCESS_SAMPLE = 20  # the group's newest crashes whose process names the group page shows


HEAD_CHARS = 4096  # a crash payload's header (process, PID, signal) lies well within


def newest_payloads(conn: Connection, ids: list[int]) -> dict[int, str]:
    """The head of each group's newest crash's payload (of any period), so that the
    crash list names a process beside each frame: one statement, one seek per group in
    ``records (guilty_id, id)`` (the newest id of each group as a correlated subquery,
    which both databases answer from the index's end): it costs about the groups shown
    (1.2 ms of CPU for 35 on SQLite), never their crashes."""
    if not ids:
        return {}
    r, n, g = records.c, records.alias("newest").c, guilty.c
    newest = (
        select(select(func.max(n.id)).where(n.guilty_id == g.id).scalar_subquery())
        .where(g.id.in_(ids))
    )
    stmt = select(r.guilty_id, func.substr(r.payload, 1, HEAD_CHARS)).where(r.id.in_(newest))
    return {int(gid): str(head) for gid, head in conn.execute(stmt) if head is not None}


def process_counts(processes: Iterable[str | None]) -> list[Row]:
    """``[{process, records}]`` of a sample of crashes, most frequent first."""
    counts = Counter(p or "" for p in processes)
    return [
        {"process": name, "records": n}
        for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def group_detail(
    conn: Connection,
    guilty_id: int,
    period: Period,
    limit: int,
    offset: int,
    exact_max: int = EXACT_MACHINES_MAX,
) -> Row | None:
    """What the crash group page shows of one group over a period (None: no such group):
    its crashes, per day and build, its machines (one page of ``limit`` from
    ``offset``, most crashes first) and the processes of its newest crashes."""
    g = get_guilty(conn, guilty_id)
    if g is None:
        return None
    spread = guilty_spread(conn, guilty_id, period, exact_max)
    # One more than the page: whether there is a next one (the total may be estimated).
    machines = guilty_machines(conn, guilty_id, period, limit + 1, offset, spread.records)
    newest = guilty_records(conn, guilty_id, period=period, limit=PROCESS_SAMPLE)
    return {
        "guilty": g,
        "records": spread.records,
        "daily": daily_crashes(conn, [guilty_id], period).get(guilty_id, []),
        "processes": process_counts(parse_crash(r["payload"] or "").process for r in newest),
        "builds": spread.builds,
        "machines_total": spread.machines,
        "machines_estimated": spread.machines_estimated,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(machines) > limit else None,
        "machines": machines[:limit],
    }


def blacklist(conn: Connection) -> list[Row]:
    """Return every "never guilty" frame, by function then module."""
    t = guilty_blacklist
    stmt = select(t).order_by(t.c.function, t.c.module)
    return [dict(x) for x in conn.execute(stmt).mappings()]


def update_guilty(conn: Connection, guilty_id: int, comment: str, hide: bool) -> bool:
    """Set a crash group's comment and hidden flag; return False if it does not exist."""
    stmt = update(guilty).where(guilty.c.id == guilty_id).values(comment=comment, hide=hide)
    return bool(conn.execute(stmt).rowcount)
