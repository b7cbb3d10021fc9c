"""POST /api/v1/records/bulk: many Clear Linux records in one request.

The body is a JSON array (``Content-Type: application/json``) or NDJSON, one record per
line (``application/x-ndjson``), of records in the v3 JSON shape the 2.4.x client sends:
the header fields as strings plus ``payload``. The telemetry id comes from the
``X-Telemetry-TID`` header of the request. Each record is checked by
:func:`downlink.sources.clearlinux.wire.validate`, exactly as at ``/v2/collector``; all valid
records are stored in one :meth:`Store.write` call (one transaction), and the answer
lists a result per item in input order: ``{"index", "status": 201|200|400, "id"}`` or
``{"index", "status": 400, "message"}``. 200 means a retransmission already stored.
An item is refused (400) when it breaks a validation rule, including the text rule
(a NUL character in any field, :mod:`downlink.store.storable`), or when the database
refuses it while it takes the others; the other items are stored all the same.

Whole-request failures: 400 (not JSON / not an array), 413 (body or item count over the
limit), 503 with Retry-After (writer queue full or database unavailable); nothing of
such a request is stored.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from downlink.ingest.body import BodyTooLarge, off_loop, read_body
from downlink.ingest.responses import error, json_response
from downlink.ingest.shallow_json import JSONError, array_items, loads_shallow
from downlink.metrics import Metrics
from downlink.security.senders import SenderGuard, SendersUnavailable, retry_after
from downlink.settings import Settings
from downlink.sources.clearlinux.wire import (
    EXTERNAL_KEY,
    JSON_RECORD_SCHEMA,
    SOURCE,
    TID_KEY,
    RecordRejected,
    fields_from_json,
    fields_from_object,
    fields_from_raw_headers,
    flat_record,
    validate,
)
from downlink.store.database import Store
from downlink.store.writer import QueueFull, RecordsRefused, StoreUnavailable

PATH = "/api/v1/records/bulk"
NDJSON_TYPES = frozenset(("application/x-ndjson", "application/jsonl", "application/ndjson"))

RESULT_SCHEMA: dict[str, Any] = {
    "title": "BulkItemResult",
    "type": "object",
    "properties": {
        "index": {"type": "integer", "description": "Position of the item in the request."},
        "status": {"type": "integer", "enum": [200, 201, 400],
                   "description": "201 stored, 200 already stored (retransmission), 400 refused"},
        "id": {"type": ["integer", "null"], "description": "Stored record id."},
        "message": {"type": "string", "description": "Why the item was refused."},
    },
    "required": ["index", "status"],
}
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": JSON_RECORD_SCHEMA}},
            "application/x-ndjson": {
                "schema": {"type": "string",
                           "description": "One ClearLinuxRecordV3 JSON object per line."}
            },
        },
    },
    "parameters": [
        {"name": "X-Telemetry-TID", "in": "header", "required": False,
         "schema": {"type": "string"}, "description": "Telemetry id of every record."}
    ],
    "responses": {
        "200": {
            "description": "Per-item results, in input order.",
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "duplicates": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "results": {"type": "array", "items": RESULT_SCHEMA},
                },
            }}},
        },
        "400": {"description": "The body is not a JSON array / NDJSON."},
        "413": {"description": "Body or item count over the limit."},
        "503": {"description": "Store busy or unavailable; retry after Retry-After.",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    },
}

router = APIRouter(tags=["ingest"])


class TooManyItems(Exception):
    """More records in one body than DOWNLINK_BULK_MAX_ITEMS."""


def split_items(body: bytes, content_type: str, limit: int) -> list[bytes | msgspec.Raw]:
    """Return the undecoded items of the body: lines (bytes) of NDJSON, elements
    (Raw views) of a JSON array, whose syntax is checked here.

    Raises TooManyItems before any work per item when there are more than ``limit``.
    """
    items: list[bytes | msgspec.Raw]
    if content_type in NDJSON_TYPES:
        lines = body.split(b"\n")
        most = len(lines) - lines.count(b"") - lines.count(b"\r")  # C speed, before a loop
        if most > limit:
            raise TooManyItems(most)
        items = [line for line in lines if line.strip()]
    else:
        try:
            found = array_items(body)
        except JSONError as exc:
            raise RecordRejected(f"Request body is not valid JSON: {exc}", "json") from None
        if found is None:
            raise RecordRejected("Request body must be a JSON array of records", "json")
        if len(found) > limit:
            raise TooManyItems(len(found))
        items = [*found]
    return items


def _item_fields(item: bytes | msgspec.Raw) -> tuple[dict[str, str], bytes]:
    if isinstance(item, bytes):  # an NDJSON line: a whole document of its own
        return fields_from_json(item)
    flat = flat_record(item)
    if flat is not None:
        return fields_from_object(flat)
    try:
        doc = loads_shallow(item)
    except JSONError as exc:
        raise RecordRejected(f"Record is not valid JSON: {exc}", "json") from None
    if not isinstance(doc, dict):
        raise RecordRejected("Record must be a JSON object", "json")
    return fields_from_object(doc)


class _Checked:
    """A bulk body parsed and validated: the rows to store and a result per item."""

    def __init__(self) -> None:
        self.count = 0
        self.results: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.positions: list[int] = []


def _check(body: bytes, ctype: str, raw_headers: list[tuple[bytes, bytes]],
           settings: Settings, metrics: Metrics) -> _Checked | Response:
    """Parse and validate every item (in a worker thread for large bodies)."""
    try:
        items = split_items(body, ctype, settings.bulk_max_items)
    except RecordRejected as exc:
        return error(exc.message, 400)
    except TooManyItems as exc:
        return error(f"{exc.args[0]} records are more than the limit of "
                     f"{settings.bulk_max_items} per request", 413)
    metrics.received.labels(SOURCE).inc(len(items))
    shared = fields_from_raw_headers(raw_headers)
    extra = {key: shared[key] for key in (TID_KEY, EXTERNAL_KEY) if key in shared}
    now = time.time()
    out = _Checked()
    out.count = len(items)
    for index, item in enumerate(items):
        try:
            fields, payload = _item_fields(item)
            fields.update(extra)
            row = validate(fields, payload, allowed_tids=settings.telemetry_ids,
                           any_tid=settings.any_tid, received_at=now)
        except RecordRejected as exc:
            metrics.rejected.labels(SOURCE, exc.reason).inc()
            out.results.append({"index": index, "status": 400, "message": exc.message})
            continue
        out.positions.append(len(out.results))
        out.results.append({"index": index, "status": 201, "id": None})
        out.rows.append(row)
    return out


async def _check_senders(
    request: Request, rows: list[dict[str, Any]], positions: list[int],
    results: list[dict[str, Any]], metrics: Metrics,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Per-sender rate limits (an item over its machine id's rate gets 429) and
    bindings (an item whose machine id does not match is stored flagged)."""
    guard: SenderGuard = request.app.state.senders
    kept_rows: list[dict[str, Any]] = []
    kept_positions: list[int] = []
    for row, pos in zip(rows, positions, strict=True):
        wait = guard.rate_wait(SOURCE, (row["machine_id"],))
        if wait > 0:
            metrics.rejected.labels(SOURCE, "sender_rate_limit").inc()
            results[pos] = {"index": results[pos]["index"], "status": 429,
                            "message": "Too many records from this machine id, retry later",
                            "retry_after": int(retry_after(wait))}
            continue
        kept_rows.append(row)
        kept_positions.append(pos)
    if guard.binds(SOURCE) and kept_rows:
        proof = guard.proof(request.headers.raw, request.scope.get("client"))
        verdicts = await guard.check(SOURCE, (r["machine_id"] for r in kept_rows), proof)
        for row in kept_rows:
            if not verdicts[row["machine_id"]].matches:
                row["sender_flagged"] = True
    return kept_rows, kept_positions


@router.post(PATH, openapi_extra=OPENAPI, summary="Store many Clear Linux records at once")
async def bulk(request: Request) -> Response:
    """Validate every item, store the valid ones in one transaction, report per item."""
    store: Store = request.app.state.store
    settings = store.settings
    metrics = store.metrics
    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge as exc:
        return error(str(exc), 413)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    checked = await off_loop(len(body), _check, body, ctype, request.headers.raw, settings,
                             metrics)
    if isinstance(checked, Response):
        return checked
    results, rows, positions = checked.results, checked.rows, checked.positions
    try:
        rows, positions = await _check_senders(request, rows, positions, results, metrics)
    except SendersUnavailable as exc:
        metrics.rejected.labels(SOURCE, "store_unavailable").inc(len(rows))
        return error(f"Store unavailable, retry later: {exc}", 503, {"Retry-After": "5"})

    try:
        stored = await store.write(rows)
    except RecordsRefused as exc:
        stored = exc.results  # the others are stored: report the refused ones per item
    except QueueFull as exc:
        metrics.rejected.labels(SOURCE, "queue_full").inc(len(rows))
        return error(f"Server busy, retry later: {exc}", 503, {"Retry-After": "1"})
    except StoreUnavailable as exc:
        metrics.rejected.labels(SOURCE, "store_unavailable").inc(len(rows))
        return error(f"Store unavailable, retry later: {exc}", 503, {"Retry-After": "5"})
    duplicates = refused = 0
    for pos, item in zip(positions, stored, strict=True):
        if item.failed:
            metrics.rejected.labels(SOURCE, "refused").inc()
            results[pos] = {"index": results[pos]["index"], "status": 400,
                            "message": item.refused}
            refused += 1
            continue
        results[pos]["id"] = item.id
        if item.duplicate:
            results[pos]["status"] = 200
            duplicates += 1
    accepted = len(stored) - duplicates - refused
    metrics.accepted.labels(SOURCE).inc(accepted)
    metrics.duplicates.labels(SOURCE).inc(duplicates)
    return json_response({
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": checked.count - accepted - duplicates,
        "results": results,
    })
