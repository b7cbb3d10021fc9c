"""GET /api/records: the Clear Linux query API, plus cursor paging, time range and export.

Parameters and messages follow telemetrics-backend (classification <= 140 chars,
severity 1-4, machine_id <= 32, build <= 256, created_in_days, created_in_sec,
from_id, ts_capture, limit 1..10000 default 10000, newest first). The original's
bugs are not kept: ``limit`` is compared as a number and there is no hidden 30-day cap.
Downlink adds ``before_id`` (cursor), ``since``/``until``, ``source`` and ``format``.

Every format is streamed in parts of a few MiB of records
(:func:`~downlink.store.queries.records.byte_chunks`), each read and encoded in a
worker thread, so an answer of 10,000 records of 8 MiB each needs the memory of one
part. A JSON page also stops at ``DOWNLINK_API_PAGE_BYTES`` of records (a client has to
hold a JSON document whole); ``next_cursor`` and ``next`` then say where it goes on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from downlink.analytics.records import RecordReads
from downlink.errors import BadRequest
from downlink.params import MAX_ID, RecordId, integer, parse_moment, text
from downlink.store.database import Store
from downlink.store.queries.records import (
    RecordFilter,
    byte_chunks,
    cut_by_bytes,
    get_record,
    record_sizes,
    records_by_ids,
)
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


MEDIA_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}
# A part is written to the connection in pieces of this size, each sent once the
# previous one drained (no copy of a whole part in the server's or the socket's buffers).
PIECE_BYTES = 256 * 1024


def _csv_field(value: Any) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"'


def _csv_text(rows: Sequence[Sequence[Any]]) -> bytes:
    """Rows as ``csv.writer(quoting=csv.QUOTE_ALL)`` writes them.

    By hand because the csv module builds each row in a buffer of 4 bytes a
    character: 16 MiB of transient memory for a 4 MiB payload.
    """
    return "".join(",".join(_csv_field(v) for v in row) + "\r\n" for row in rows).encode()


def reads_of(request: Request) -> RecordReads:
    """The store the records are read from: ClickHouse when configured, else SQL."""
    shipping = request.app.state.analytics
    if shipping is not None:
        found: RecordReads = shipping.reads["records"]
        return found
    store: Store = request.app.state.store
    return RecordReads(store.read, record_sizes, records_by_ids)


def _encode_part(
    handle: Any, by_ids: Callable[..., list[dict[str, Any]]], ids: list[int], fmt: str
) -> bytes:
    """Read one part of the answer and encode it (in a worker thread)."""
    items = [clear_json(row) for row in by_ids(handle, ids)]
    if fmt == "csv":
        return _csv_text([[item.get(c) for c in CSV_COLUMNS] for item in items])
    if fmt == "ndjson":
        return b"".join(orjson.dumps(item) + b"\n" for item in items)
    return b",".join(orjson.dumps(item) for item in items)


async def _stream(
    reads: RecordReads, fmt: str, sizes: Sequence[tuple[int, int]], tail: bytes
) -> AsyncIterator[bytes]:
    """Yield the answer part by part: at most one part of records is in memory."""
    if fmt == "json":
        yield b'{"records":['
    elif fmt == "csv":
        yield _csv_text([CSV_COLUMNS])
    written = False
    for part in byte_chunks(sizes):
        data = await reads.read(_encode_part, reads.by_ids, part, fmt)
        if data:
            if written and fmt == "json":
                yield b","
            view = memoryview(data)
            for start in range(0, len(data), PIECE_BYTES):
                yield view[start : start + PIECE_BYTES]  # type: ignore[misc]
            written = True
    yield tail


def _next_link(request: Request, cursor: int) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "before_id"]
    return f"{request.url.path}?{urlencode([*params, ('before_id', str(cursor))])}"


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
    """List records, newest first, as ``{"records": [...], "next_cursor": id|null, ...}``.

    JSON pages also end at ``DOWNLINK_API_PAGE_BYTES`` of records; ``next`` is then the
    URL of the next page and ``cut_by_bytes`` is true. Every format is streamed.
    """
    store: Store = request.app.state.store
    params = dict(request.query_params)
    f, lim = parse_filter(params, store.settings.api_limit_max)
    fmt = (format or "json").lower()
    if fmt not in MEDIA_TYPES:
        raise BadRequest("format must be json, csv or ndjson")
    reads = reads_of(request)
    sizes: Sequence[tuple[int, int]] = await reads.read(reads.sizes, f, lim)
    cut = False
    if fmt == "json":
        page = cut_by_bytes(sizes, store.settings.api_page_bytes)
        cut, sizes = len(page) < len(sizes), page
    next_cursor = sizes[-1][0] if sizes and (cut or len(sizes) == lim) else None
    headers: dict[str, str] = {}
    tail = b""
    link = None
    if next_cursor is not None:
        link = _next_link(request, next_cursor)
        headers = {"X-Next-Cursor": str(next_cursor), "Link": f'<{link}>; rel="next"'}
    if fmt == "json":
        tail = b"]," + orjson.dumps({"next_cursor": next_cursor, "next": link,
                                     "cut_by_bytes": cut})[1:]
    return StreamingResponse(_stream(reads, fmt, sizes, tail),
                             media_type=MEDIA_TYPES[fmt], headers=headers)


@router.get("/api/records/{record_id}", responses=_ONE_RESPONSES)
async def record_api(request: Request, record_id: RecordId) -> Response:
    """Return one record by id."""
    store: Store = request.app.state.store
    row = await store.read(get_record, record_id)
    if row is None:
        raise BadRequest(f"no record with id {record_id}", status=404)
    return Response(orjson.dumps(clear_json(row)), media_type="application/json")
