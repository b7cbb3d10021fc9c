"""``GET /api/v1/aggregation``: ok / anomaly / confirmed / failure counts (reference A4).

Groups by up to two axes. Time is bucketed in SQL by hour or day (the floor of epoch
seconds over the bucket, the same on SQLite and PostgreSQL); week, month and year
buckets are folded from days in Python.

The whole buckets of the range are read from the rollups (``rollup.py``: the cheapest
level that has every axis and filter), the partial ones at its ends from a finer level
or from the fastpath rows, and the parts are added up: the answer is the same as
grouping the fastpath rows, at the cost of the period's rollup rows.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select

from downlink.sources.ooni import rollup, testlists
from downlink.sources.ooni.params import ParamError, asns, comma_list, integer, min_len, moment
from downlink.sources.ooni.tables import citizenlab, fastpath

AXES = (
    "measurement_start_day", "probe_cc", "probe_asn", "test_name", "domain", "input",
    "category_code", "blocking_type",
)
GRAINS = ("hour", "day", "week", "month", "year")
COUNTS = ("anomaly_count", "confirmed_count", "failure_count", "ok_count", "measurement_count")


class AggregationError(ValueError):
    """A request OONI answers with ``{"msg": ..., "v": 0}``; ``status`` 200 or 400."""

    def __init__(self, msg: str, status: int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status


def allowed_grains(since: datetime, until: datetime) -> tuple[str, ...]:
    """The grains a range allows, finest first (``auto`` takes the first)."""
    days = (until - since).total_seconds() / 86400
    if days <= 7:
        return ("hour", "day")
    if days <= 30:
        return ("day", "week")
    if days <= 365:
        return ("day", "week", "month")
    return ("day", "week", "month", "year")


@dataclass
class Aggregation:
    """A validated aggregation request."""

    since: datetime
    until: datetime
    grain: str
    axis_x: str | None
    axis_y: str | None
    fmt: str
    download: bool
    filters: list[Any]
    # The equality filters by fastpath column (values in any order): what ``run``
    # applies to the rollups or the fastpath rows; ``filters`` holds the same and the
    # time range as conditions on ``ooni_fastpath``.
    eq: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def axes(self) -> list[str]:
        return [a for a in (self.axis_x, self.axis_y) if a]


def parse(params: Mapping[str, str], now: datetime | None = None) -> Aggregation:
    """Validate; AggregationError (OONI's shapes) or ParamError (400 ``detail``)."""
    fmt = (params.get("format") or "JSON").upper()
    if fmt not in ("JSON", "CSV"):
        raise AggregationError(f"Invalid format {params.get('format')!r}", 200)
    axis_x = params.get("axis_x") or None
    axis_y = params.get("axis_y") or None
    for axis in (axis_x, axis_y):
        if axis is not None and axis not in AXES:
            raise AggregationError(f"Invalid axis name {axis!r}", 400)
    if axis_x is not None and axis_x == axis_y:
        raise AggregationError("Axis X and Y cannot be the same", 200)
    now = now or datetime.now(UTC)
    until = moment(params.get("until"), "until") or now
    since = moment(params.get("since"), "since") or (until - timedelta(days=180))
    if since >= until:
        raise ParamError("since: must be before until")
    grain = params.get("time_grain") or "day"
    allowed = allowed_grains(since, until)
    if grain == "auto":
        grain = allowed[0]
    elif grain not in allowed:
        raise AggregationError(
            f"Choose time_grain between {', '.join(allowed)} for the given time range", 400
        )
    f: list[Any] = [
        fastpath.c.measurement_start_time >= since.timestamp(),
        fastpath.c.measurement_start_time < until.timestamp(),
    ]
    eq: dict[str, list[Any]] = {}
    inp = min_len(params.get("input"), "input")
    if inp is not None:
        eq["input"] = [inp]
    domains = comma_list(params.get("domain"))
    if domains:
        eq["domain"] = domains
    ccs = [cc.upper() for cc in comma_list(params.get("probe_cc"))]
    if ccs:
        eq["probe_cc"] = ccs
    asn_list = asns(params.get("probe_asn"))
    if asn_list:
        eq["probe_asn"] = asn_list
    tns = comma_list(params.get("test_name"))
    for tn in tns:
        if not all(ch.islower() or ch.isdigit() or ch == "_" for ch in tn):
            raise ParamError(f"test_name: {tn!r} does not match ^[a-z0-9_,]+$")
    if tns:
        eq["test_name"] = tns
    link = params.get("ooni_run_link_id")
    if link:
        eq["ooni_run_link_id"] = [integer(link, "ooni_run_link_id", 0, 0, 2**63 - 1)]
    codes = comma_list(params.get("category_code"))
    for code in codes:
        if not testlists.CATEGORY.match(code):
            raise ParamError(f"category_code: {code!r} does not match ^[A-Z]+$")
    if codes:
        eq["category_code"] = codes
    f.extend(_conditions(eq))
    download = (params.get("download") or "").lower() in ("true", "1")
    return Aggregation(since, until, grain, axis_x, axis_y, fmt, download, f, eq)


def _listed(codes: Sequence[str] | None = None) -> Any:
    """A fastpath row's URL is in its country's or the global test list (in a category)."""
    cl, c = citizenlab.c, fastpath.c
    on = [cl.url == c.input, or_(cl.cc == c.probe_cc, cl.cc == "ZZ")]
    if codes is not None:
        on.append(cl.category_code.in_(codes))
    return and_(*on)


def _conditions(eq: Mapping[str, Sequence[Any]], joined: bool = False) -> list[Any]:
    """The equality filters on fastpath rows (category_code through the test lists)."""
    out: list[Any] = [
        fastpath.c[name].in_(values) for name, values in eq.items() if name != "category_code"
    ]
    codes = eq.get("category_code")
    if codes:
        if joined:
            out.append(citizenlab.c.category_code.in_(codes))
        else:
            out.append(exists().where(_listed(codes)))
    return out


def bucket_seconds(grain: str) -> int:
    """Seconds in a time bucket of the grain (finer grains fold from days)."""
    return 3600 if grain == "hour" else 86400


def _fold(day: datetime, grain: str) -> datetime:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "year":
        return day.replace(month=1, day=1)
    return day


Piece = tuple["rollup.Level | None", float, float]


def pieces(
    dims: set[str], step: int, lo: float, hi: float,
    levels: Sequence[rollup.Level] = rollup.LEVELS,
) -> list[Piece]:
    """Split ``[lo, hi)`` into whole buckets of the cheapest usable level and the ends.

    ``None`` as a level means the fastpath rows themselves.
    """
    level = next(
        (lv for lv in levels if dims <= set(lv.dims) and step % lv.seconds == 0), None
    )
    if level is None:
        return [(None, lo, hi)]
    s = level.seconds
    a, b = math.ceil(lo / s) * s, math.floor(hi / s) * s
    finer = [lv for lv in levels if lv.seconds < s]
    if a >= b:
        return pieces(dims, step, lo, hi, finer)
    out: list[Piece] = [(level, float(a), float(b))]
    if lo < a:
        out += pieces(dims, step, lo, a, finer)
    if b < hi:
        out += pieces(dims, step, b, hi, finer)
    return out


def _statement(conn: Connection, agg: Aggregation, piece: Piece, step: int) -> Any:
    """The grouped SELECT of one piece: axis values (time as a bucket index), counts."""
    level, lo, hi = piece
    columns: list[Any] = []
    if level is None:
        c = fastpath.c
        joined = "category_code" in agg.axes
        for axis in agg.axes:
            if axis == "measurement_start_day":
                columns.append(rollup.floor(conn, c.measurement_start_time, step))
            elif axis == "category_code":
                columns.append(citizenlab.c.category_code)
            else:
                columns.append(c[axis])
        conds = [
            c.measurement_start_time >= lo, c.measurement_start_time < hi,
            *_conditions(agg.eq, joined),
        ]
        stmt = select(*columns, *rollup.count_columns()).where(and_(*conds))
        if joined:
            stmt = stmt.select_from(fastpath.join(citizenlab, _listed()))
        return stmt.group_by(*columns) if columns else stmt
    t = level.table
    bucket = t.c[level.bucket]
    for axis in agg.axes:
        if axis == "measurement_start_day":
            columns.append(bucket // (step // level.seconds) if step > level.seconds else bucket)
        else:
            columns.append(t.c[axis])
    conds = [
        bucket >= int(lo) // level.seconds, bucket < int(hi) // level.seconds,
        *(t.c[name].in_(values) for name, values in agg.eq.items()),
    ]
    sums = [func.sum(t.c[n]) for n in COUNTS]
    stmt = select(*columns, *sums).where(and_(*conds))
    if columns:
        stmt = stmt.group_by(*columns)
    return stmt.having(func.sum(t.c.measurement_count) > 0)


def run(conn: Connection, agg: Aggregation) -> list[dict[str, Any]]:
    """Rows of ``{axis..., *_count}``, ordered by the axes (the SQL store)."""
    names = agg.axes
    dims = set(agg.eq) | {a for a in names if a != "measurement_start_day"}
    step = bucket_seconds(agg.grain) if "measurement_start_day" in names else 86400
    parts = pieces(dims, step, agg.since.timestamp(), agg.until.timestamp())
    rows = [tuple(r) for p in parts for r in conn.execute(_statement(conn, agg, p, step))]
    return fold(agg, rows)


def needs_test_lists(agg: Aggregation) -> bool:
    """Whether the request groups or filters by category (the test lists, which live in
    the SQL store only: such a request is answered there even with ClickHouse)."""
    return "category_code" in agg.axes or "category_code" in agg.eq


def fold(agg: Aggregation, groups: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The answer from grouped counts, whichever store computed them: each group is the
    axes' values (time as a bucket number of :func:`bucket_seconds`) then the counts of
    ``COUNTS`` in order, a key possibly in several groups (they add up). Buckets fold
    into weeks, months, years here."""
    names = agg.axes
    step = bucket_seconds(agg.grain)
    merged: dict[tuple[Any, ...], list[int]] = {}
    for r in groups:
        key_parts: list[Any] = []
        for name, value in zip(names, r[: len(names)], strict=True):
            if name == "measurement_start_day":
                start = datetime.fromtimestamp(int(value) * step, UTC)
                key_parts.append(_fold(start, agg.grain))
            else:
                key_parts.append(value)
        key = tuple(key_parts)
        totals = merged.setdefault(key, [0] * len(COUNTS))
        for i, n in enumerate(r[len(names):]):
            totals[i] += int(n or 0)
    out = []
    for key in sorted(merged, key=lambda k: tuple((v is None, 0 if v is None else v) for v in k)):
        item: dict[str, Any] = {}
        for name, value in zip(names, key, strict=True):
            if isinstance(value, datetime):
                fmt = "%Y-%m-%dT%H:%M:%SZ" if agg.grain == "hour" else "%Y-%m-%d"
                item[name] = value.strftime(fmt)
            else:
                item[name] = value
        item.update(zip(COUNTS, merged[key], strict=True))
        out.append(item)
    return out


def envelope(agg: Aggregation, rows: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """OONI's JSON envelope."""
    dims = len(agg.axes)
    result: Any = rows if dims else (rows[0] if rows else dict.fromkeys(COUNTS, 0))
    total = sum(r["measurement_count"] for r in rows)
    return {
        "v": 0,
        "dimension_count": dims,
        "db_stats": {
            "row_count": total,
            "bytes": 0,
            "total_row_count": total,
            "elapsed_seconds": round(elapsed, 6),
        },
        "result": result,
    }


def to_csv(agg: Aggregation, rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, axes first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*agg.axes, *COUNTS], lineterminator="\n")
    writer.writeheader()
    if not agg.axes and not rows:
        rows = [dict.fromkeys(COUNTS, 0)]
    writer.writerows(rows)
    return buf.getvalue()
