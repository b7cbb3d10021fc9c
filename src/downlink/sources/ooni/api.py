"""The OONI measurements API: search, metadata, bodies and aggregation (reference A4).

Every endpoint here is metered by the per-address quotas (:mod:`.quotas`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from sqlalchemy import Connection, select
from starlette.responses import Response

from downlink.archive.storage import Storage, StorageError, open_storage
from downlink.sources.ooni import aggregation, archive, log, search
from downlink.sources.ooni.fastpath import unwrap
from downlink.sources.ooni.params import ParamError, boolean
from downlink.sources.ooni.probe_services import config
from downlink.sources.ooni.quotas import Limits, quotas_of
from downlink.sources.ooni.reads import reads_of
from downlink.sources.ooni.tables import fastpath, measurements

# OONI's API (its parameters, 422 for a malformed report_id, {"msg", "v"} refusals of
# the aggregation), in Downlink's OpenAPI document: the handlers read the query
# themselves (OONI's rules, docs/ooni.md), so each route declares its parameters as
# text. Refusals carry Downlink's "message" beside OONI's keys.
router = APIRouter(tags=["ooni measurements"])


def _query(*names: str) -> dict[str, Any]:
    """``openapi_extra`` declaring optional text query parameters."""
    return {"parameters": [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
        for n in names
    ]}


_SEARCH = _query(
    "report_id", "input", "domain", "probe_cc", "probe_asn", "test_name", "category_code",
    "since", "until", "anomaly", "confirmed", "failure", "software_version", "test_version",
    "engine_version", "ooni_run_link_id", "order_by", "order", "offset", "limit", "cursor",
)
_LOOKUP = _query("measurement_uid", "report_id", "input", "full")
_AGGREGATION = _query(
    "input", "domain", "category_code", "probe_cc", "probe_asn", "test_name",
    "ooni_run_link_id", "since", "until", "time_grain", "axis_x", "axis_y", "format",
    "download",
)
_JSON_OR_CSV: dict[int | str, dict[str, Any]] = {
    200: {"description": "Counts (JSON, or CSV with format=CSV); OONI answers an unknown "
          "format or equal axes 200 with {msg, v}",
          "content": {"application/json": {}, "text/csv": {}}},
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"description": "A parameter is not usable (the message names it)"},
    404: {"description": "No such measurement"},
    429: {"description": "Quota exceeded"},
}
# OONI's lookups by report_id refuse a malformed one with 422 (reference A4).
_LOOKUP_REFUSED: dict[int | str, dict[str, Any]] = {
    **_REFUSED,
    422: {"description": "report_id is not 15-100 characters of A-Z, a-z, 0-9, _"},
}
log_ = logging.getLogger(__name__)

_REPORT_ID = re.compile(r"^[A-Za-z0-9_]{15,100}$")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _detail(message: str, status: int = 400) -> Response:
    """A refusal: OONI's ``detail`` and Downlink's ``message``, the same text."""
    return _json({"detail": message, "message": message}, status)


async def _metered(request: Request, handler: Callable[[], Awaitable[Response]]) -> Response:
    cfg = config(request)
    limits = Limits(cfg.quota_hour, cfg.quota_day, cfg.quota_week)
    return await quotas_of(request, limits).metered(request, handler)


@router.get("/api/v1/measurements", responses=_REFUSED, openapi_extra=_SEARCH)
async def list_measurements(request: Request) -> Response:
    """Search measurements (newest first), count-free pagination with keyset cursors."""

    async def handle() -> Response:
        store = request.app.state.store
        params = dict(request.query_params)
        try:
            q = search.parse(params, store.settings.api_limit_max)
        except ParamError as exc:
            return _detail(str(exc))
        started = time.monotonic()
        reads = reads_of(request, sql_only=q.test_lists)
        rows = await reads.read(reads.search, q)
        base = str(request.base_url).rstrip("/")
        results = [search.result(r, base) for r in rows]
        full = len(rows) == q.limit
        next_url = None
        if full:
            nxt = {**params, "offset": str(q.offset + q.limit), "limit": str(q.limit)}
            last = rows[-1]
            nxt["cursor"] = search.make_cursor(
                last["measurement_start_time"], last["measurement_uid"]
            )
            next_url = str(request.url.replace_query_params(**nxt))
        count = -1 if full else q.offset + len(rows)
        metadata = {
            "count": count,
            "current_page": q.offset // q.limit + 1,
            "limit": q.limit,
            "next_url": next_url,
            "offset": q.offset,
            "pages": -1 if full else q.offset // q.limit + 1,
            "query_time": round(time.monotonic() - started, 6),
        }
        return _json(
            {"metadata": metadata, "results": results}, headers={"Cache-Control": "max-age=60"}
        )

    return await _metered(request, handle)


def lookup(conn: Connection, uid: str | None, report_id: str | None,
            inp: str | None, storage: Storage | None) -> dict[str, Any] | None:
    """The fastpath row of a uid (or of report_id + input) with its body, from the log
    or, once retention removed it there, from the raw archive."""
    stmt = select(fastpath, measurements.c.body).select_from(
        fastpath.outerjoin(
            measurements, measurements.c.measurement_uid == fastpath.c.measurement_uid
        )
    )
    if uid:
        stmt = stmt.where(fastpath.c.measurement_uid == uid)
    else:
        stmt = stmt.where(fastpath.c.report_id == report_id, fastpath.c.input == (inp or ""))
    found = conn.execute(stmt.order_by(fastpath.c.measurement_uid).limit(1)).mappings().first()
    row: dict[str, Any] | None = dict(found) if found is not None else None
    if row is None and uid:
        body = log.body_of(conn, uid)
        row = {"measurement_uid": uid, "body": body, "unscored": True}
    if row is not None and row["body"] is None and storage is not None:
        try:
            row["body"] = archive.body_from_archive(conn, storage, row["measurement_uid"])
        except StorageError:
            log_.exception("reading the raw archive failed")
    if row is None or (row.get("unscored") and row["body"] is None):
        return None
    return row


def archive_storage(request: Request) -> Storage | None:
    state = request.app.state
    if not hasattr(state, "ooni_storage"):
        cfg = config(request)
        try:
            state.ooni_storage = (
                open_storage(cfg.archive, cfg.s3_endpoint or None) if cfg.archive else None
            )
        except StorageError:
            log_.exception("DOWNLINK_OONI_ARCHIVE is not usable")
            state.ooni_storage = None
    found: Storage | None = state.ooni_storage
    return found


def _content(body: bytes | None) -> dict[str, Any] | None:
    if body is None:
        return None
    try:
        unwrapped = unwrap(orjson.loads(bytes(body)))
    except orjson.JSONDecodeError:
        return None
    return unwrapped[0] if unwrapped is not None else None


def lookup_params(request: Request) -> tuple[str | None, str | None, str | None] | Response:
    uid = request.query_params.get("measurement_uid")
    report_id = request.query_params.get("report_id")
    inp = request.query_params.get("input")
    if not uid and not report_id:
        return _detail("give measurement_uid, or report_id (and input)")
    if report_id and not _REPORT_ID.match(report_id):
        return _detail("report_id: 15 to 100 characters of A-Z, a-z, 0-9 and _", 422)
    return uid, report_id, inp


@router.get("/api/v1/raw_measurement", responses=_LOOKUP_REFUSED, openapi_extra=_LOOKUP)
async def raw_measurement(request: Request) -> Response:
    """The measurement body; ``{}`` when unknown."""

    async def handle() -> Response:
        parsed = lookup_params(request)
        if isinstance(parsed, Response):
            return parsed
        row = await request.app.state.store.read(lookup, *parsed, archive_storage(request))
        content = _content(row["body"]) if row else None
        return _json(content or {}, headers={"Cache-Control": "max-age=86400"})

    return await _metered(request, handle)


@router.get("/api/v1/measurement/{uid}", responses=_REFUSED, openapi_extra=_query("download"))
async def measurement_body(uid: str, request: Request) -> Response:
    """Only the body of one measurement; ``download=true`` makes it an attachment."""

    async def handle() -> Response:
        row = await request.app.state.store.read(lookup, uid, None, None, archive_storage(request))
        content = _content(row["body"]) if row else None
        if content is None:
            return _detail(f"no measurement {uid}", 404)
        headers = {"Cache-Control": "max-age=3600"}
        try:
            download = boolean(request.query_params.get("download"), "download")
        except ParamError as exc:
            return _detail(str(exc))
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{uid}.json"'
        return _json(content, headers=headers)

    return await _metered(request, handle)


def meta_of(row: dict[str, Any], full: bool) -> dict[str, Any]:
    """OONI's measurement_meta fields of a fastpath row."""
    meta = {
        "anomaly": bool(row["anomaly"]),
        "confirmed": bool(row["confirmed"]),
        "failure": bool(row["msm_failure"]),
        "input": row["input"],
        "measurement_start_time": search.iso(row["measurement_start_time"]),
        "measurement_uid": row["measurement_uid"],
        "probe_asn": row["probe_asn"],
        "probe_cc": row["probe_cc"],
        "report_id": row["report_id"],
        "scores": row["scores"],
        "test_name": row["test_name"],
        "test_start_time": search.iso(row["test_start_time"]),
        "platform": row["platform"],
        "is_verified": row["is_verified"],
    }
    if full:
        content = _content(row.get("body"))
        meta["raw_measurement"] = orjson.dumps(content).decode() if content else ""
    return meta


@router.get("/api/v1/measurement_meta", responses=_LOOKUP_REFUSED, openapi_extra=_LOOKUP)
async def measurement_meta(request: Request) -> Response:
    """Metadata and scores of one measurement, with its body when ``full=true``."""

    async def handle() -> Response:
        parsed = lookup_params(request)
        if isinstance(parsed, Response):
            return parsed
        try:
            full = bool(boolean(request.query_params.get("full"), "full"))
        except ParamError as exc:
            return _detail(str(exc))
        row = await request.app.state.store.read(lookup, *parsed, archive_storage(request))
        if row is None or row.get("unscored"):
            return _json({})
        return _json(meta_of(row, full), headers={"Cache-Control": "max-age=60"})

    return await _metered(request, handle)


@router.get(
    "/api/v1/aggregation", responses={**_REFUSED, **_JSON_OR_CSV}, openapi_extra=_AGGREGATION
)
async def aggregate(request: Request) -> Response:
    """Counts by up to two axes, as JSON or CSV."""

    async def handle() -> Response:
        try:
            agg = aggregation.parse(dict(request.query_params))
        except aggregation.AggregationError as exc:
            return _json({"msg": exc.msg, "v": 0, "message": exc.msg}, exc.status)
        except ParamError as exc:
            return _detail(str(exc))
        started = time.monotonic()
        reads = reads_of(request, sql_only=aggregation.needs_test_lists(agg))
        rows = await reads.read(reads.aggregate, agg)
        elapsed = time.monotonic() - started
        headers = {}
        if agg.fmt == "CSV":
            if agg.download:
                headers["Content-Disposition"] = 'attachment; filename="ooni-aggregate-data.csv"'
            return Response(
                aggregation.to_csv(agg, rows), media_type="text/csv", headers=headers
            )
        if agg.download:
            headers["Content-Disposition"] = 'attachment; filename="ooni-aggregate-data.json"'
        return _json(aggregation.envelope(agg, rows, elapsed), headers=headers)

    return await _metered(request, handle)
