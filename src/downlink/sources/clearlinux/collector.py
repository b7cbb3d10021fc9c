"""HTTP collector of Clear Linux records at /v2/collector, /v3/collector and /.

One record per POST. The format is chosen by Content-Type: ``application/json`` is the
2.4.x client's JSON record, anything else the 2.3.x header record. The answer is sent
only after the record is committed: 201 with the stored record, 400 with a message
naming the bad field (or saying that the database refused the record while it takes
others), 413 for an oversized body, 503 with Retry-After when the writer
queue is full or the database is unavailable.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from downlink.ingest.body import BodyTooLarge, off_loop
from downlink.security.senders import SECRET_HEADER, SenderGuard, SendersUnavailable, retry_after
from downlink.settings import Settings
from downlink.sources.clearlinux.wire import (
    EXTERNAL_KEY,
    JSON_RECORD_SCHEMA,
    SOURCE,
    TID_KEY,
    RecordRejected,
    fields_from_json,
    head_from_raw_headers,
    validate,
)
from downlink.store.database import Store
from downlink.store.record_json import clear_json
from downlink.store.writer import QueueFull, RecordsRefused, StoreUnavailable

PATHS = ("/v2/collector", "/v3/collector", "/")
_SECRET = SECRET_HEADER.lower().encode("latin-1")

Headers = list[tuple[bytes, bytes]]


class _Disconnected(Exception):
    """The client went away before its body arrived."""


def _with_body(
    headers: dict[str, str], ctype: str | None, body: bytes
) -> tuple[dict[str, str], bytes]:
    """The record's fields and payload: from the headers, or from a v3 JSON body."""
    if ctype is None or ctype.split(";", 1)[0].strip().lower() != "application/json":
        return headers, body
    fields, payload = fields_from_json(body)
    for key in (TID_KEY, EXTERNAL_KEY):
        if key in headers:
            fields[key] = headers[key]
    return fields, payload


def _row(
    headers: dict[str, str], ctype: str | None, body: bytes, settings: Settings
) -> dict[str, Any]:
    """Parse and validate one record (in a worker thread for large bodies)."""
    fields, payload = _with_body(headers, ctype, body)
    return validate(
        fields,
        payload,
        allowed_tids=settings.telemetry_ids,
        any_tid=settings.any_tid,
        received_at=time.time(),
    )


async def _read_body(declared: str | None, receive: Receive, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes is larger than the limit of {limit}")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLarge(f"body is larger than the limit of {limit} bytes")
    if not message.get("more_body", False):
        return body  # the whole body in one message: the usual case
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes, extra: Headers | None = None) -> None:
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


def _message(text: str) -> bytes:
    return orjson.dumps({"message": text})


class _Context:
    """What every post of one app needs, looked up once per app, not once per post."""

    def __init__(self, app: Any) -> None:
        self.store: Store = app.state.store
        self.settings = self.store.settings
        self.guard: SenderGuard = app.state.senders
        metrics = self.store.metrics
        self.rejected = metrics.rejected
        self.received = metrics.received.labels(SOURCE)
        self.accepted = metrics.accepted.labels(SOURCE)
        self.duplicates = metrics.duplicates.labels(SOURCE)

    def reject(self, reason: str) -> None:
        self.rejected.labels(SOURCE, reason).inc()


def _context(app: Any) -> _Context:
    found: _Context | None = getattr(app, "_clearlinux_collector", None)
    if found is None:
        found = _Context(app)
        app._clearlinux_collector = found
    return found


async def collect(scope: Scope, receive: Receive, send: Send) -> None:
    """Validate and store one record (a plain ASGI endpoint: this is the hot path)."""
    if scope["method"] != "POST":
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [(b"location", b"/records"), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    ctx = _context(scope["app"])
    settings = ctx.settings
    raw: Headers = scope["headers"]
    ctx.received.inc()
    headers, ctype, declared, secret_sent = head_from_raw_headers(raw, _SECRET)
    try:
        body = await _read_body(declared, receive, settings.max_body_bytes)
    except BodyTooLarge as exc:
        ctx.reject("too_large")
        await _answer(send, 413, _message(str(exc)))
        return
    except _Disconnected:
        ctx.reject("disconnected")
        return
    try:
        row = await off_loop(len(body), _row, headers, ctype, body, settings)
    except RecordRejected as exc:
        ctx.reject(exc.reason)
        await _answer(send, 400, _message(exc.message))
        return
    guard = ctx.guard
    sender = row["machine_id"]
    wait = guard.rate_wait(SOURCE, (sender,))
    if wait > 0:
        ctx.reject("sender_rate_limit")
        await _answer(send, 429, _message("Too many records from this machine id, retry later"),
                      [(b"retry-after", retry_after(wait).encode())])
        return
    extra: Headers = []
    if guard.binds(SOURCE) and not guard.known(SOURCE, sender, secret_sent, scope.get("client")):
        proof = guard.proof(raw, scope.get("client"))
        try:
            verdict = (await guard.check(SOURCE, (sender,), proof))[sender]
        except SendersUnavailable as exc:
            ctx.reject("store_unavailable")
            await _answer(send, 503, _message(f"Store unavailable, retry later: {exc}"),
                          [(b"retry-after", b"5")])
            return
        if not verdict.matches:
            row["sender_flagged"] = True  # stored, left out of the dashboards
        if verdict.secret is not None:
            extra.append((_SECRET, verdict.secret.encode("latin-1")))
    try:
        (stored,) = await ctx.store.write([row])
    except RecordsRefused as exc:
        ctx.reject("refused")
        await _answer(send, 400, _message(exc.results[0].refused or "refused"))
        return
    except QueueFull as exc:
        ctx.reject("queue_full")
        await _answer(
            send, 503, _message(f"Server busy, retry later: {exc}"), [(b"retry-after", b"1")]
        )
        return
    except StoreUnavailable as exc:
        ctx.reject("store_unavailable")
        await _answer(
            send, 503, _message(f"Store unavailable, retry later: {exc}"), [(b"retry-after", b"5")]
        )
        return
    if stored.duplicate:
        ctx.duplicates.inc()
    else:
        ctx.accepted.inc()
    await _answer(send, 201, orjson.dumps(clear_json(stored.row)), extra)


class _RawEndpoint:
    """Starlette wraps plain functions in Request/Response; an object is served as ASGI."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await collect(scope, receive, send)


routes = [Route(path, _RawEndpoint(), methods=["POST", "GET", "HEAD"]) for path in PATHS]


def _openapi_operation(path: str) -> dict[str, object]:
    answer = {"application/json": {"schema": {"type": "object"}}}
    message = {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
    retry = {"Retry-After": {"schema": {"type": "integer"}}}
    name = path.strip("/").replace("/", "_") or "root"
    return {
        "post": {
            "operationId": f"collect_{name}",
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
                    "application/json": {"schema": JSON_RECORD_SCHEMA},
                }
            },
            "responses": {
                "201": {"description": "Stored (or already stored)", "content": answer,
                        "headers": {SECRET_HEADER: {
                            "description": "The machine id's secret, on the record that "
                            "bound it (docs/senders.md)", "schema": {"type": "string"}}}},
                "400": {"description": "A field breaks a rule", "content": message},
                "413": {"description": "Body too large", "content": message},
                "429": {"description": "Over the per-address or per-machine-id rate limit",
                        "content": message, "headers": retry},
                "503": {"description": "Busy or store unavailable", "content": message,
                        "headers": retry},
            },
        },
        "get": {
            "operationId": f"redirect_{name}",
            "tags": ["collector"],
            "summary": f"Redirect a browser to the records page ({path})",
            "description": "As the original collector did: records are only posted here.",
            "responses": {
                "302": {"description": "To /records",
                        "headers": {"Location": {"schema": {"type": "string"}}}},
            },
        },
    }


def openapi_paths() -> dict[str, dict[str, object]]:
    """Describe the collector endpoints for the OpenAPI document."""
    return {path: _openapi_operation(path) for path in PATHS}
