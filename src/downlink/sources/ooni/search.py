"""``GET /api/v1/measurements``: the query over ``ooni_fastpath`` (reference A4).

Pagination is count-free like OONI's: a full page answers ``count = pages = -1`` and a
``next_url``; a short page gives the exact count. ``next_url`` also carries a keyset
``cursor`` (the last row's start time and uid), so a deep page costs what the first
one does instead of rescanning every earlier page (OONI's open issue #636).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Select, and_, or_, select

from downlink.sources.ooni.params import (
    ParamError,
    asns,
    boolean,
    comma_list,
    integer,
    min_len,
    moment,
)
from downlink.sources.ooni.tables import citizenlab, fastpath
from downlink.sources.ooni.testlists import CATEGORY

MAX_WINDOW = timedelta(days=180)
_T = fastpath.c.measurement_start_time


@dataclass
class Query:
    """A validated search."""

    since: float | None
    until: float | None
    filters: list[Any] = field(default_factory=list)
    order_desc: bool = True
    offset: int = 0
    limit: int = 100
    cursor: tuple[float, str] | None = None
    # Filtered by category_code: the test lists, kept in the SQL store only, so the
    # search is answered there even with ClickHouse configured.
    test_lists: bool = False


def _cursor(value: str | None) -> tuple[float, str] | None:
    if not value:
        return None
    try:
        t, uid = orjson.loads(base64.urlsafe_b64decode(value.encode() + b"=="))
        return float(t), str(uid)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ParamError("cursor: not a cursor this server made") from None


def make_cursor(t: float, uid: str) -> str:
    """The opaque keyset cursor after a row."""
    return base64.urlsafe_b64encode(orjson.dumps([t, uid])).decode().rstrip("=")


def parse(params: Mapping[str, str], limit_max: int, now: datetime | None = None) -> Query:
    """Validate the parameters; ParamError names the first bad one."""
    f: list[Any] = []
    report_id = min_len(params.get("report_id"), "report_id")
    if report_id is not None:
        f.append(fastpath.c.report_id == report_id)
    test_lists = False
    inp = min_len(params.get("input"), "input")
    if inp is not None:
        f.append(fastpath.c.input == inp)
    else:
        domains = comma_list(params.get("domain"))
        for d in domains:
            min_len(d, "domain")
        if domains:
            f.append(fastpath.c.domain.in_(domains))
        codes = comma_list(params.get("category_code"))
        for code in codes:
            if not CATEGORY.match(code):
                raise ParamError(f"category_code: {code!r} does not match ^[A-Z]+$")
        if codes:
            # OONI joins the test lists on url = input.
            listed = select(citizenlab.c.url).where(citizenlab.c.category_code.in_(codes))
            f.append(fastpath.c.input.in_(listed))
            test_lists = True
    ccs = [cc.upper() for cc in comma_list(params.get("probe_cc"))]
    f.append(fastpath.c.probe_cc.in_(ccs) if ccs else fastpath.c.probe_cc != "ZZ")
    asn_list = asns(params.get("probe_asn"))
    f.append(fastpath.c.probe_asn.in_(asn_list) if asn_list else fastpath.c.probe_asn != 0)
    for name, col in (
        ("test_name", fastpath.c.test_name),
        ("software_version", fastpath.c.software_version),
        ("test_version", fastpath.c.test_version),
        ("engine_version", fastpath.c.engine_version),
    ):
        values = comma_list(params.get(name))
        if values:
            f.append(col.in_(values))
    for name, col in (
        ("anomaly", fastpath.c.anomaly),
        ("confirmed", fastpath.c.confirmed),
        ("failure", fastpath.c.msm_failure),
    ):
        flag = boolean(params.get(name), name)
        if flag is not None:
            f.append(col.is_(flag))
    link = params.get("ooni_run_link_id")
    if link:
        f.append(fastpath.c.ooni_run_link_id == integer(link, "ooni_run_link_id", 0, 0, 2**63 - 1))
    since = moment(params.get("since"), "since")
    until = moment(params.get("until"), "until")
    if report_id is None:
        now = now or datetime.now(UTC)
        if until is None:
            until = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        if since is None:
            since = until - timedelta(days=30)
        if until - since > MAX_WINDOW:
            raise ParamError("since/until: the window may not exceed 180 days")
    if since is not None and until is not None and since > until:
        raise ParamError("since: must be before until")
    order_by = params.get("order_by") or "measurement_start_time"
    if order_by != "measurement_start_time":
        raise ParamError("order_by: only measurement_start_time is supported")
    order = (params.get("order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise ParamError("order: asc or desc")
    return Query(
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
        filters=f,
        test_lists=test_lists,
        order_desc=order == "desc",
        offset=integer(params.get("offset"), "offset", 0, 0, 10**9),
        limit=integer(params.get("limit"), "limit", 100, 1, limit_max),
        cursor=_cursor(params.get("cursor")),
    )


def conditions(q: Query) -> list[Any]:
    """The page's conditions: filters, window and keyset cursor (both stores use them)."""
    conds = list(q.filters)
    if q.since is not None:
        conds.append(_T > q.since)
    if q.until is not None:
        conds.append(_T <= q.until)
    uid = fastpath.c.measurement_uid
    if q.cursor is not None:
        t, last = q.cursor
        if q.order_desc:
            conds.append(or_(_T < t, and_(_T == t, uid < last)))
        else:
            conds.append(or_(_T > t, and_(_T == t, uid > last)))
    return conds


def statement(q: Query) -> Select[Any]:
    """The SELECT for one page (keyset when a cursor is given, else offset)."""
    conds = conditions(q)
    uid = fastpath.c.measurement_uid
    order = (_T.desc(), uid.desc()) if q.order_desc else (_T.asc(), uid.asc())
    stmt = select(fastpath).where(and_(*conds)).order_by(*order).limit(q.limit)
    if q.cursor is None and q.offset:
        stmt = stmt.offset(q.offset)
    return stmt


def iso(t: float | None) -> str | None:
    """Epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def result(row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """One item of ``results``."""
    uid = row["measurement_uid"]
    return {
        "measurement_uid": uid,
        "measurement_url": f"{base_url}/api/v1/raw_measurement?measurement_uid={uid}",
        "report_id": row["report_id"],
        "probe_cc": row["probe_cc"],
        "probe_asn": f"AS{row['probe_asn']}",
        "test_name": row["test_name"],
        "measurement_start_time": iso(row["measurement_start_time"]),
        "input": row["input"] or None,
        "anomaly": bool(row["anomaly"]),
        "confirmed": bool(row["confirmed"]),
        "failure": bool(row["msm_failure"]),
        "scores": orjson.loads(row["scores"]),
        "verification_status": row["is_verified"],
    }


def run(conn: Connection, q: Query) -> list[dict[str, Any]]:
    """The rows of one page."""
    return [dict(r) for r in conn.execute(statement(q)).mappings()]
