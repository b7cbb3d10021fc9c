"""GET /api/records: the Clear Linux query API, plus cursor paging, time range and export.

Parameters and messages follow telemetrics-backend (classification <= 140 chars,
severity 1-4, machine_id <= 32, build <= 256, created_in_days, created_in_sec,
from_id, ts_capture, limit 1..10000 default 10000, newest first). The original's
bugs are not kept: ``limit`` is compared as a number and there is no hidden 30-day cap.
Downlink adds ``before_id`` (cursor), ``since``/``until``, ``source`` and ``format``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from downlink.api.errors import BadRequest
from downlink.api.params import MAX_ID, RecordId, integer, parse_moment, text
from downlink.store.database import Store
from downlink.store.queries.records import RecordFilter, get_record, list_records
from downlink.store.record_json import clear_json

router = APIRouter(tags=["records"])

CSV_COLUMNS = (
    "id",
    "source",
    "ts_reception",
    "ts_capture",
    "severity",
    "classification",
    "build",
    "machine_id",
    "machine_type",
    "arch",
    "kernel_version",
    "system_name",
    "board_name",
    "cpu_model",
    "bios_version",
    "event_id",
    "record_version",
    "payload_format_version",
    "external",
    "payload",
)
SOURCE_MAX = 32
_PRINTABLE = frozenset(chr(c) for c in range(32, 127)) | {"\t"}


def _id(params: Mapping[str, str | None], name: str, message: str) -> int | None:
    return integer(params.get(name), name, 0, MAX_ID, message)


def parse_filter(
    params: Mapping[str, str | None], limit_max: int, now: float | None = None
) -> tuple[RecordFilter, int]:
    """Validate query parameters into a filter and a limit, raising BadRequest."""
    now = time.time() if now is None else now
    severity = integer(
        params.get("severity"), "severity", 1, 4, "Severity should be a numeric value"
    )
    classification = text(
        params.get("classification"), "classification", 140, "Classification value is invalid"
    )
    if classification is not None and len(classification.split("/")) != 3:
        raise BadRequest("Classification value is invalid")
    build = params.get("build")
    if build is not None:
        build = build.replace('"', "").replace("'", "")
        if len(build) > 256 or not all(ch in _PRINTABLE for ch in build):
            raise BadRequest("Build value is invalid")
    machine_id = text(params.get("machine_id"), "machine_id", 32, "Machine id value is invalid")
    source = text(params.get("source"), "source", SOURCE_MAX)
    days = _id(params, "created_in_days", "Created (in days) value is invalid")
    secs = _id(params, "created_in_sec", "Created (in seconds) value is invalid")
    from_id = _id(params, "from_id", "Provided record id value is invalid")
    before_id = _id(params, "before_id", "before_id must be a record id")
    ts_capture = _id(params, "ts_capture", "Time stamp from record capture is invalid")
    limit = integer(params.get("limit"), "limit", 1, limit_max, "Record limit value is invalid")
    if limit is None:
        limit = limit_max
    since = parse_moment(params.get("since"), "since")
    if days is not None:
        since = max(since or 0.0, now - days * 86400)
    elif secs is not None:
        since = max(since or 0.0, now - secs)
    until = parse_moment(params.get("until"), "until")
    f = RecordFilter(
        classification=classification,
        severity=severity,
        machine_id=machine_id,
        build=build,
        source=source,
        received_after=since,
        received_before=until,
        captured_after=float(ts_capture) if ts_capture is not None else None,
        from_id=from_id,
        before_id=before_id,
    )
    return f, limit


def _csv_lines(items: list[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        writer.writerow([item.get(c) for c in CSV_COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The records, newest first (X-Next-Cursor: the next page's before_id).",
        "content": {
            "application/json": {"schema": {
                "type": "object",
                "properties": {
                    "records": {"type": "array", "items": {"type": "object"}},
                    "next_cursor": {"type": ["integer", "null"]},
                },
                "required": ["records", "next_cursor"],
            }},
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
}
_ONE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The record.", "content": {"application/json": {"schema": {
        "type": "object"}}}},
    404: {"description": "No record has that id."},
}


@router.get("/api/records", responses=_LIST_RESPONSES)
async def records_api(
    request: Request,
    classification: Annotated[str | None, Query(description="domain/probe/rest, <= 140")] = None,
    severity: Annotated[str | None, Query(description="1 to 4")] = None,
    machine_id: Annotated[str | None, Query(description="<= 32 characters")] = None,
    build: Annotated[str | None, Query(description="OS build, quotes ignored")] = None,
    created_in_days: Annotated[str | None, Query(description="received in the last N days")] = None,
    created_in_sec: Annotated[str | None, Query(description="received in the last N s")] = None,
    from_id: Annotated[str | None, Query(description="records with id >= from_id")] = None,
    before_id: Annotated[str | None, Query(description="cursor: records with id < it")] = None,
    ts_capture: Annotated[str | None, Query(description="captured after (epoch s)")] = None,
    since: Annotated[str | None, Query(description="received after (epoch or ISO)")] = None,
    until: Annotated[str | None, Query(description="received at or before")] = None,
    source: Annotated[str | None, Query(description="clearlinux, substrate, …")] = None,
    limit: Annotated[str | None, Query(description="1..10000, default 10000")] = None,
    format: Annotated[str | None, Query(description="json (default), csv or ndjson")] = None,
) -> Response:
    """List records, newest first, as ``{"records": [...], "next_cursor": id|null}``."""
    store: Store = request.app.state.store
    params = dict(request.query_params)
    f, lim = parse_filter(params, store.settings.api_limit_max)
    fmt = (format or "json").lower()
    if fmt not in ("json", "csv", "ndjson"):
        raise BadRequest("format must be json, csv or ndjson")
    rows = await store.read(list_records, f, lim)
    items = [clear_json(r) for r in rows]
    next_cursor = rows[-1]["id"] if len(rows) == lim else None
    headers = {"X-Next-Cursor": str(next_cursor)} if next_cursor is not None else {}
    if fmt == "csv":
        return StreamingResponse(_csv_lines(items), media_type="text/csv", headers=headers)
    if fmt == "ndjson":
        body = b"".join(orjson.dumps(i) + b"\n" for i in items)
        return Response(body, media_type="application/x-ndjson", headers=headers)
    return Response(
        orjson.dumps({"records": items, "next_cursor": next_cursor}),
        media_type="application/json",
        headers=headers,
    )


@router.get("/api/records/{record_id}", responses=_ONE_RESPONSES)
async def record_api(request: Request, record_id: RecordId) -> Response:
    """Return one record by id."""
    store: Store = request.app.state.store
    row = await store.read(get_record, record_id)
    if row is None:
        raise BadRequest(f"no record with id {record_id}", status=404)
    return Response(orjson.dumps(clear_json(row)), media_type="application/json")
