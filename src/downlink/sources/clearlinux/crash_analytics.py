"""Clear Linux's crash pages on whichever store serves them: top groups, a group, backtraces.

The SQL store answers from the crash rollups kept by the crash consumer and from
``records.guilty_id`` (:mod:`.queries.crashes`). On ClickHouse the crash records are
shipped to ``clearlinux_crashes`` with the frames :func:`find_guilty` walks, and the
guilty frame of each record is computed *at query time* with the current "never
guilty" list (:func:`guilty_sql`, the same algorithm in ClickHouse's array functions).

Why not ship ``guilty_id``: it is derived state that changes after the record is
shipped (the crash consumer sets it after the ack, a regroup rewrites it for every
stored crash when the list changes), and a shipper only sees new rows. What the
crash pages need from the SQL store is small and joined by key instead: the "never
guilty" list (a query parameter), the ids, labels and comments of the groups shown
and the hidden ones (read from ``guilty``, the few groups of one answer). So a
blacklist edit shows on ClickHouse at once, where the SQL pages wait for the regroup
job; once that job is done both answer the same (the parity tests).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import HTTPConnection

from downlink.analytics.client import Analytics
from downlink.analytics.records import records_by_ids
from downlink.sources.base import AnalyticsTable, LogRecord
from downlink.sources.clearlinux.backtrace import (
    BACKTRACE_CLASSES,
    UNKNOWN_FUNCTION,
    match_frame,
    parse_crash,
)
from downlink.sources.clearlinux.crashes import load_blacklist
from downlink.sources.clearlinux.queries import crashes as q
from downlink.sources.clearlinux.tables import guilty
from downlink.sources.clearlinux.wire import SOURCE
from downlink.sources.runtime import analytics_of, store_of
from downlink.store.queries.period import Period, build_sort_key

Row = dict[str, Any]
Pair = tuple[str, str]

NAME = "clearlinux_crashes"
# What the crash pages' freshness mark follows: the crash consumer on the SQL store, the
# crash rows' shipper on ClickHouse (a consumer that is not running is left out).
FRESH = ("clearlinux_crashes", f"analytics_{NAME}")
_CLASSES = frozenset(BACKTRACE_CLASSES)
_LOOKUP_PART = 500

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "UInt64"),
    ("ts_reception", "Float64"),
    ("machine_id", "String"),
    ("build", "String"),
    ("classification", "LowCardinality(String)"),
    ("sender_flagged", "Bool"),
    # The (function, module) of every frame find_guilty walks, in order.
    ("frames", "Array(Tuple(String, String))"),
    ("process", "String"),
    ("shipped_at", "Float64"),
)


def walked_frames(payload: str) -> list[Pair]:
    """The frames :func:`~downlink.sources.clearlinux.backtrace.find_guilty` walks, in
    order: those of the first run of frame lines after the first line."""
    frames: list[Pair] = []
    for line in payload.splitlines()[1:]:
        groups = match_frame(line)
        if groups is None:
            if frames:
                break
            continue
        frames.append((groups[0], groups[1]))
    return frames


def _rows(conn: Connection, batch: Sequence[LogRecord]) -> list[Sequence[Any]]:
    del conn
    now = time.time()
    out: list[Sequence[Any]] = []
    for record in batch:
        r = record.row
        if r["source"] != SOURCE or r["classification"] not in _CLASSES:
            continue
        payload = r.get("payload") or ""
        out.append([
            r["id"], r["ts_reception"], r["machine_id"], r["build"], r["classification"],
            bool(r.get("sender_flagged")), walked_frames(payload),
            parse_crash(payload).process or "", now,
        ])
    return out


TABLE = AnalyticsTable(
    name=NAME,
    follows="records",
    columns=COLUMNS,
    order_by=("id",),
    version="shipped_at",
    time_column="ts_reception",
    rows=_rows,
)

_UNKNOWN = f"p.1 = '{UNKNOWN_FUNCTION}' OR startsWith(p.1, '? ')"


def guilty_sql() -> str:
    """``WITH`` clauses defining ``g``, a record's guilty (function, module) under the
    blacklist ``{bl:Array(Tuple(String, String))}``, as find_guilty picks it: the first
    frame not blacklisted and not unknown (``???``, ``? x``), except that a ``? x`` frame
    after an earlier unknown one is; else the first unknown frame not blacklisted; else
    the last frame. Meaningful where ``notEmpty(frames)``."""
    return (
        "WITH arrayMap(p -> NOT has({bl:Array(Tuple(String, String))}, p), frames) AS cand, "
        f"arrayMap(p -> {_UNKNOWN}, frames) AS unk, "
        "arrayFirstIndex((c, x) -> c AND x, cand, unk) AS u, "
        f"arrayFirstIndex((c, x, p, k) -> c AND p.1 != '{UNKNOWN_FUNCTION}' "
        "AND (NOT x OR k != u), cand, unk, frames, arrayEnumerate(frames)) AS r, "
        "if(r > 0, frames[r], if(u > 0, frames[u], frames[length(frames)])) AS g "
    )


_DAY = "intDiv(toInt64(ts_reception), 86400)"


class _Query:
    """One crash question: the guilty frame, the period and further conditions."""

    def __init__(self, ch: Analytics, blacklist: Iterable[Pair], period: Period | None) -> None:
        self.ch = ch
        self.params: dict[str, Any] = {"bl": sorted(blacklist)}
        self.terms = ["notEmpty(frames)"]
        if period is not None:
            self.where(f"{_DAY} BETWEEN {{first:Int64}} AND {{last:Int64}}",
                       first=period.first, last=period.last)

    def where(self, term: str, **params: Any) -> _Query:
        self.terms.append(term)
        self.params.update(params)
        return self

    def counted(self) -> _Query:
        """Only what the rollups count (not the records stored flagged)."""
        return self.where("NOT sender_flagged")

    def of_pairs(self, pairs: Sequence[Pair]) -> _Query:
        return self.where("has({pairs:Array(Tuple(String, String))}, g)", pairs=list(pairs))

    def of_build(self, build: str | None) -> _Query:
        return self if build is None else self.where("build = {build:String}", build=build)

    def run(self, select_: str, tail: str = "") -> list[tuple[Any, ...]]:
        sql = (f"{guilty_sql()}SELECT {select_} FROM {self.ch.table(NAME)} FINAL "
               f"WHERE {' AND '.join(self.terms)} {tail}")
        return self.ch.query(sql, self.params)


def _ids_of(conn: Connection, pairs: Iterable[Pair]) -> dict[Pair, int]:
    """The crash group id of each (function, module) pair that has one."""
    wanted = set(pairs)
    functions = sorted({f for f, _ in wanted})
    out: dict[Pair, int] = {}
    for start in range(0, len(functions), _LOOKUP_PART):
        part = functions[start : start + _LOOKUP_PART]
        stmt = select(guilty.c.id, guilty.c.function, guilty.c.module).where(
            guilty.c.function.in_(part)
        )
        for gid, f, m in conn.execute(stmt):
            if (f, m) in wanted:
                out[(f, m)] = int(gid)
    return out


def _machines(
    query: _Query, key: str, records: int, exact_max: int
) -> tuple[dict[Any, int], bool]:
    """Distinct machines per ``key``: exact up to ``exact_max`` crash records, like the
    SQL store, else ClickHouse's estimate (``uniq``)."""
    estimated = records > exact_max
    fn = "uniq" if estimated else "uniqExact"
    rows = query.run(f"{key} AS k, {fn}(machine_id)", "GROUP BY k")
    return {k: int(n) for k, n in rows}, estimated


def _daily(
    ch: Analytics, blacklist: set[Pair], pairs: dict[int, Pair], period: Period,
    build: str | None = None,
) -> dict[int, list[int]]:
    out = {gid: [0] * period.days for gid in pairs}
    if not pairs:
        return out
    ids = {p: gid for gid, p in pairs.items()}
    query = _Query(ch, blacklist, period).counted().of_pairs(list(ids)).of_build(build)
    for g, day, n in query.run(f"g, {_DAY} AS day, count()", "GROUP BY g, day"):
        out[ids[tuple(g)]][int(day) - period.first] = int(n)
    return out


def top_guilties(
    ch: Analytics,
    conn: Connection,
    period: Period,
    build: str | None = None,
    limit: int = 50,
    include_hidden: bool = False,
    exact_max: int = q.EXACT_MACHINES_MAX,
) -> list[Row]:
    """The twin of :func:`.queries.crashes.top_guilties`."""
    blacklist = load_blacklist(conn)
    found = _Query(ch, blacklist, period).counted().run(
        "g, build, count(), min(ts_reception), max(ts_reception)", "GROUP BY g, build"
    )
    ids = _ids_of(conn, (tuple(g) for g, *_ in found))
    cells = [(ids[tuple(g)], b, n, first, last)
             for g, b, n, first, last in found if tuple(g) in ids]
    hidden = q.hidden_groups(conn)
    ranked = q.rank_groups(cells, hidden, build, limit, include_hidden)
    if not ranked.ids:
        return []
    shown = set(ranked.ids)
    pairs = {gid: p for p, gid in ids.items() if gid in shown}
    machines_of, estimated = _machines(
        _Query(ch, blacklist, period).counted().of_pairs(list(pairs.values())).of_build(build),
        "g", ranked.scanned, exact_max,
    )
    machines = {ids[tuple(g)]: n for g, n in machines_of.items()}
    daily = _daily(ch, blacklist, pairs, period, build)
    return ranked.items(q.group_labels(conn, ranked.ids), hidden, machines, estimated, daily,
                        period)


def group_detail(
    ch: Analytics,
    conn: Connection,
    guilty_id: int,
    period: Period,
    limit: int,
    offset: int,
    exact_max: int = q.EXACT_MACHINES_MAX,
) -> Row | None:
    """The twin of :func:`.queries.crashes.group_detail`."""
    g = q.get_guilty(conn, guilty_id)
    if g is None:
        return None
    blacklist = load_blacklist(conn)
    pair = (g["function"], g["module"])

    def of_group() -> _Query:
        return _Query(ch, blacklist, period).where("g = {pair:Tuple(String, String)}", pair=pair)

    per_build = {str(b): int(n) for b, n in of_group().counted().run(
        "build, count()", "GROUP BY build")}
    total = sum(per_build.values())
    machines_total, estimated = 0, False
    builds: list[Row] = []
    if total:
        everywhere, estimated = _machines(of_group().counted(), "1", total, exact_max)
        machines_total = everywhere.get(1, 0)
        by_build, _ = _machines(of_group().counted(), "build", total, exact_max)
        builds = [{"build": b, "machines": by_build.get(b, 0), "records": n}
                  for b, n in per_build.items()]
        builds.sort(key=lambda x: build_sort_key(x["build"]), reverse=True)
    n = "count()"
    machines = [
        {"build": str(b), "machine_id": str(m), "records": int(k)}
        for b, m, k in of_group().counted().run(
            f"build, machine_id, {n} AS n",
            f"GROUP BY build, machine_id ORDER BY n DESC, machine_id, build "
            f"LIMIT {int(limit) + 1} OFFSET {int(offset)}",
        )
    ]
    newest = of_group().run("process", f"ORDER BY id DESC LIMIT {q.PROCESS_SAMPLE}")
    return {
        "guilty": g,
        "records": total,
        "daily": _daily(ch, blacklist, {guilty_id: pair}, period)[guilty_id],
        "processes": q.process_counts(str(p) for (p,) in newest),
        "builds": builds,
        "machines_total": machines_total,
        "machines_estimated": estimated,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(machines) > limit else None,
        "machines": machines[:limit],
    }


def group_records(
    ch: Analytics,
    conn: Connection,
    guilty_id: int,
    machine_id: str | None,
    build: str | None,
    period: Period | None,
    limit: int,
) -> list[Row]:
    """The twin of :func:`sql_group_records`: the group's newest records, with payload."""
    g = q.get_guilty(conn, guilty_id)
    if g is None:
        return []
    query = _Query(ch, load_blacklist(conn), period).where(
        "g = {pair:Tuple(String, String)}", pair=(g["function"], g["module"])
    ).of_build(build)
    if machine_id is not None:
        query.where("machine_id = {machine:String}", machine=machine_id)
    ids = [int(i) for (i,) in query.run("id", f"ORDER BY id DESC LIMIT {int(limit)}")]
    rows = records_by_ids(ch, ids)
    for row in rows:
        row["guilty_id"] = guilty_id  # the group it is in now (the shipped one may be older)
    return rows


def sql_group_records(
    conn: Connection,
    guilty_id: int,
    machine_id: str | None,
    build: str | None,
    period: Period | None,
    limit: int,
) -> list[Row]:
    """The newest records of one crash group (:func:`.queries.crashes.guilty_records`)."""
    return q.guilty_records(conn, guilty_id, machine_id=machine_id, build=build,
                            period=period, limit=limit)


@dataclass(frozen=True)
class CrashReads:
    """``read(fn, *args)`` runs one of the three questions off the event loop."""

    read: Callable[..., Awaitable[Any]]
    top: Callable[..., list[Row]]
    group: Callable[..., Row | None]
    records: Callable[..., list[Row]]


def crash_reads_of(request: HTTPConnection) -> CrashReads:
    """ClickHouse's crash reads when configured (with the SQL store for the groups'
    labels, hidden flags and the blacklist), else the SQL store's."""
    store = store_of(request)
    found = analytics_of(request, SOURCE)
    if found is None:
        return CrashReads(store.read, q.top_guilties, q.group_detail, sql_group_records)
    ch: Analytics = found.ch

    async def read(fn: Callable[..., Any], *args: Any) -> Any:
        return await store.read(lambda conn: fn(ch, conn, *args))

    return CrashReads(read, top_guilties, group_detail, group_records)
