"""``GET /api/v1/aggregation``: ok / anomaly / confirmed / failure counts (reference A4).

Groups by up to two axes. Time is bucketed in SQL by hour or day (integer division of
epoch seconds, the same on SQLite and PostgreSQL); week, month and year buckets are
folded from days in Python.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, case, cast, func, not_, select

from downlink.sources.ooni.params import ParamError, asns, comma_list, integer, min_len, moment
from downlink.sources.ooni.tables import fastpath

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
    if "category_code" in (axis_x, axis_y) or params.get("category_code"):
        raise AggregationError(
            "category_code needs the citizenlab test lists, which Downlink does not load", 400
        )
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
    inp = min_len(params.get("input"), "input")
    if inp is not None:
        f.append(fastpath.c.input == inp)
    domains = comma_list(params.get("domain"))
    if domains:
        f.append(fastpath.c.domain.in_(domains))
    ccs = [cc.upper() for cc in comma_list(params.get("probe_cc"))]
    if ccs:
        f.append(fastpath.c.probe_cc.in_(ccs))
    asn_list = asns(params.get("probe_asn"))
    if asn_list:
        f.append(fastpath.c.probe_asn.in_(asn_list))
    tns = comma_list(params.get("test_name"))
    for tn in tns:
        if not all(ch.islower() or ch.isdigit() or ch == "_" for ch in tn):
            raise ParamError(f"test_name: {tn!r} does not match ^[a-z0-9_,]+$")
    if tns:
        f.append(fastpath.c.test_name.in_(tns))
    link = params.get("ooni_run_link_id")
    if link:
        f.append(fastpath.c.ooni_run_link_id == integer(link, "ooni_run_link_id", 0, 0, 2**63 - 1))
    download = (params.get("download") or "").lower() in ("true", "1")
    return Aggregation(since, until, grain, axis_x, axis_y, fmt, download, f)


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


def run(conn: Connection, agg: Aggregation) -> list[dict[str, Any]]:
    """Rows of ``{axis..., *_count}``, ordered by the axes (the SQL store)."""
    c = fastpath.c
    columns: list[Any] = []
    for axis in agg.axes:
        if axis == "measurement_start_day":
            step = bucket_seconds(agg.grain)
            columns.append(cast(c.measurement_start_time, BigInteger) / step)
        else:
            columns.append(getattr(c, axis))
    counts = [
        func.sum(case((and_(c.anomaly, not_(c.confirmed), not_(c.msm_failure)), 1), else_=0)),
        func.sum(case((and_(c.confirmed, not_(c.msm_failure)), 1), else_=0)),
        func.sum(case((c.msm_failure, 1), else_=0)),
        func.sum(
            case((and_(not_(c.anomaly), not_(c.confirmed), not_(c.msm_failure)), 1), else_=0)
        ),
        func.count(),
    ]
    stmt = select(*columns, *counts).where(and_(*agg.filters))
    if columns:
        stmt = stmt.group_by(*columns)
    return fold(agg, [tuple(r) for r in conn.execute(stmt)])


def fold(agg: Aggregation, groups: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The answer from grouped counts, whichever store computed them: each group is the
    axes' values (time as a bucket number of :func:`bucket_seconds`) then the counts of
    ``COUNTS`` in order. Buckets fold into weeks, months, years here."""
    names = agg.axes
    merged: dict[tuple[Any, ...], list[int]] = {}
    for r in groups:
        key_parts: list[Any] = []
        for name, value in zip(names, r[: len(names)], strict=True):
            if name == "measurement_start_day":
                start = datetime.fromtimestamp(int(value) * bucket_seconds(agg.grain), UTC)
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
