"""HTTP collector of Clear Linux records at /v2/collector, /v3/collector and /.

One record per POST. The format is chosen by Content-Type: ``application/json`` is the
2.4.x client's JSON record, anything else the 2.3.x header record. The answer is sent
only after the record is committed: 201 with the stored record, 400 with a message
naming the bad field, 413 for an oversized body, 503 with Retry-After when the writer
queue is full or the database is unavailable.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from downlink.ingest.body import BodyTooLarge, read_body
from downlink.ingest.clearlinux import (
    EXTERNAL_KEY,
    FIELD_KEYS,
    SOURCE,
    TID_KEY,
    RecordRejected,
    fields_from_headers,
    fields_from_json,
    validate,
)
from downlink.ingest.responses import error, json_response
from downlink.store.database import Store
from downlink.store.record_json import clear_json
from downlink.store.writer import QueueFull, StoreUnavailable

PATHS = ("/v2/collector", "/v3/collector", "/")


def _fields(request: Request, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = fields_from_headers(request.headers.items())
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        return headers, body
    fields, payload = fields_from_json(body)
    for key in (TID_KEY, EXTERNAL_KEY):
        if key in headers:
            fields[key] = headers[key]
    return fields, payload


async def collect(request: Request) -> Response:
    """Validate and store one record."""
    if request.method in ("GET", "HEAD"):
        return RedirectResponse("/records", status_code=302)
    store: Store = request.app.state.store
    settings = store.settings
    metrics = store.metrics
    metrics.received.labels(SOURCE).inc()
    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge as exc:
        metrics.rejected.labels(SOURCE, "too_large").inc()
        return error(str(exc), 413)
    try:
        fields, payload = _fields(request, body)
        row = validate(
            fields,
            payload,
            allowed_tids=settings.telemetry_ids,
            any_tid=settings.any_tid,
            received_at=time.time(),
        )
    except RecordRejected as exc:
        metrics.rejected.labels(SOURCE, exc.reason).inc()
        return error(exc.message, 400)
    try:
        (stored,) = await store.write([row])
    except QueueFull as exc:
        metrics.rejected.labels(SOURCE, "queue_full").inc()
        return error(f"Server busy, retry later: {exc}", 503, {"Retry-After": "1"})
    except StoreUnavailable as exc:
        metrics.rejected.labels(SOURCE, "store_unavailable").inc()
        return error(f"Store unavailable, retry later: {exc}", 503, {"Retry-After": "5"})
    if stored.get("duplicate"):
        metrics.duplicates.labels(SOURCE).inc()
    else:
        metrics.accepted.labels(SOURCE).inc()
    return json_response(clear_json(stored), 201)


routes = [Route(path, collect, methods=["POST", "GET", "HEAD"]) for path in PATHS]


def _openapi_operation(path: str) -> dict[str, object]:
    record = {
        "type": "object",
        "description": "The 15 record fields as strings, plus `payload` (client 2.4.x).",
        "properties": {
            **{key: {"type": "string"} for key in FIELD_KEYS},
            "payload": {"type": "string"},
        },
    }
    answer = {"application/json": {"schema": {"type": "object"}}}
    message = {
        "application/json": {
            "schema": {"type": "object", "properties": {"message": {"type": "string"}}}
        }
    }
    return {
        "post": {
            "tags": ["collector"],
            "summary": f"Store one Clear Linux telemetry record ({path})",
            "description": "Fields in headers (client 2.3.x) or one JSON object (2.4.x); "
            "see docs/collector.md. Answers only after the record is committed.",
            "parameters": [
                {"name": "X-Telemetry-TID", "in": "header", "schema": {"type": "string"}}
            ],
            "requestBody": {
                "content": {
                    "application/text": {"schema": {"type": "string"}},
                    "application/json": {"schema": record},
                }
            },
            "responses": {
                "201": {"description": "Stored (or already stored)", "content": answer},
                "400": {"description": "A field breaks a rule", "content": message},
                "413": {"description": "Body too large", "content": message},
                "503": {"description": "Busy or store unavailable", "content": message},
            },
        }
    }


def openapi_paths() -> dict[str, dict[str, object]]:
    """Describe the collector endpoints for the OpenAPI document."""
    return {path: _openapi_operation(path) for path in PATHS}
