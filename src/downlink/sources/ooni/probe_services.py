"""Probe services: open a report, submit measurements, close it (reference A1).

Answers are byte-compatible with OONI's ooniprobe service. A measurement is answered
200 ``{"measurement_uid": ...}`` only after its row in ``ooni_measurements`` is
committed; scoring happens afterwards (the fastpath consumer) and never changes the
answer.

``POST /report/{report_id}``, the hot path, is a plain ASGI endpoint served past the
middleware and the router (``Source.direct_post_prefixes``, wrapped in the same guards):
through the router a 50 KB submission cost about 1.7 ms of CPU on SQLite, half of it
route matching (``bench/ooni_submit_cpu.py``, docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from downlink.ingest.body import BodyTooLarge, ClientGone, read_body, receive_body
from downlink.sources.ooni import metrics, reportid, submission
from downlink.sources.ooni.batcher import LogBatcher
from downlink.sources.ooni.config import OoniConfig, config_from
from downlink.sources.ooni.reportid import Refusal
from downlink.store.writer import StoreUnavailable

# OONI's wire format (its status codes, 422 included, and bodies without Downlink's
# "message"): documented in docs/ooni.md, left out of Downlink's OpenAPI document,
# whose rule is 400 with {"message"} for every refusal.
router = APIRouter(tags=["ooni probe services"], include_in_schema=False)


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Malformed (OONI's bodies: Incorrect format, Inconsistent measurement, "
             "bad_metadata, JSON expected)",
        413: "Body, or what it decompresses to, over the limit",
        415: "Content-Encoding other than zstd",
        422: "A required open-report field is missing",
    }
    # OONI's exact bodies, not Downlink's {"message": ...}: any JSON object.
    body = {"application/json": {"schema": {"type": "object"}}}
    return {code: {"description": described[code], "content": body} for code in codes}

_NO_CACHE = {"Cache-Control": "no-cache"}
PATHS = frozenset({"/report", "/api/v1/submit_measurement"})
REPORT_PREFIX = "/report/"
PATH_PREFIXES = (REPORT_PREFIX,)


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=_NO_CACHE
    )


def config(conn: HTTPConnection) -> OoniConfig:
    """This app's OONI settings (read once)."""
    state = conn.app.state
    found: OoniConfig | None = getattr(state, "ooni_config", None)
    if found is None:
        found = config_from(state.settings)
        state.ooni_config = found
    return found


async def _body(request: Request, cfg: OoniConfig) -> bytes:
    try:
        return await read_body(request, cfg.max_body_bytes)
    except BodyTooLarge as exc:
        raise Refusal(413, {"detail": str(exc)}) from None


@router.post("/report", responses=_answers(400, 413, 422))
async def open_report(request: Request) -> Response:
    """Open a report: a fresh report_id carrying the probe's CC, ASN and test name."""
    cfg = config(request)
    try:
        raw = await _body(request, cfg)
    except Refusal as exc:
        return _json(exc.body, exc.status)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json({"error": "JSON expected"}, 400)
    try:
        report = reportid.parse_open(body)
    except ValueError as exc:
        return _json({"detail": str(exc)}, 422)
    rid = reportid.mint(report, cfg.collector_id)
    return _json(
        {
            "backend_version": reportid.BACKEND_VERSION,
            "report_id": rid,
            "supported_formats": reportid.SUPPORTED_FORMATS,
        }
    )


async def _store(conn: HTTPConnection, row: dict[str, Any]) -> None:
    """Commit the row (group commit); StoreUnavailable (answered 503) when it fails."""
    state = conn.app.state
    batcher: LogBatcher | None = getattr(state, "ooni_batcher", None)
    if batcher is None:
        batcher = state.ooni_batcher = LogBatcher(state.store)
    await batcher.add(row)


def _unavailable() -> Response:
    return Response(
        orjson.dumps({"detail": "the store is unavailable, retry later"}),
        status_code=503,
        media_type="application/json",
        headers={**_NO_CACHE, "Retry-After": "5"},
    )


_JSON_NO_CACHE = [(b"content-type", b"application/json"), (b"cache-control", b"no-cache")]


async def _answer(
    send: Send, status: int, body: Any, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send OONI's JSON answer with no-cache headers."""
    data = orjson.dumps(body)
    headers = [*_JSON_NO_CACHE, (b"content-length", str(len(data)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _head(scope: Scope) -> tuple[str | None, str | None]:
    """The Content-Length and Content-Encoding of a request, from its raw headers."""
    length = encoding = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value.decode("latin-1")
        elif name == b"content-encoding":
            encoding = value.decode("latin-1")
    return length, encoding


async def submit(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /report/{report_id}``: one measurement of an open report (checks 1-9 of
    reference A1, in order). A direct ASGI endpoint (see the module's docstring)."""
    conn = HTTPConnection(scope)
    m = metrics.of(conn)
    cfg = config(conn)
    report_id = scope["path"][len(REPORT_PREFIX):]
    try:
        rid = reportid.parse(report_id)
        if rid.discarded:
            reason = "asn_0" if rid.probe_asn == 0 else "cc_zz"
            m.discarded.labels(reason).inc()
            m.submissions.labels("discarded").inc()
            await _answer(send, 200, {})
            return
        declared, encoding = _head(scope)
        try:
            raw = await receive_body(receive, declared, cfg.max_body_bytes)
        except BodyTooLarge as exc:
            raise Refusal(413, {"detail": str(exc)}) from None
        try:
            data = submission.decode(raw, encoding, cfg.max_decompressed_bytes)
        except submission.TooLarge as exc:
            raise Refusal(413, {"detail": str(exc)}) from None
        body, content = submission.parse_body(data)
        meta = submission.metadata_of(content)
        submission.check_consistent(rid, meta)
        submission.check_metadata(meta)
    except ClientGone:
        m.submissions.labels("disconnected").inc()
        return
    except Refusal as exc:
        m.refused.labels(str(exc.status)).inc()
        m.submissions.labels("refused").inc()
        await _answer(send, exc.status, exc.body)
        return
    received = datetime.now(UTC)
    stored = submission.stored_as_received(data, body, "u")
    uid = submission.mint_uid(received, rid.probe_cc, rid.test_name, stored)
    row = {
        "measurement_uid": uid,
        "report_id": report_id,
        "probe_cc": rid.probe_cc.upper(),
        "probe_asn": rid.probe_asn,
        "test_name": meta.test_name,
        "ts_reception": received.timestamp(),
        "is_verified": "u",
        "body": stored,
    }
    try:
        await _store(conn, row)
    except StoreUnavailable:
        m.submissions.labels("unavailable").inc()
        await _answer(send, 503, {"detail": "the store is unavailable, retry later"},
                      [(b"retry-after", b"5")])
        return
    m.submissions.labels("stored").inc()
    await _answer(send, 200, {"measurement_uid": uid})


class _Submit:
    """:func:`submit` as an ASGI app for the router (a plain function would be wrapped
    as a request handler)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await submit(scope, receive, send)


# The direct prefix serves every POST; the route makes the router answer any other
# method on the path with 405 and ``Allow: POST``, as before the direct route (and it
# serves the POST itself in an app built without the direct routes).
router.routes.append(Route("/report/{report_id}", _Submit(), methods=["POST"],
                           include_in_schema=False))


@router.post("/report/{report_id}/close")
async def close_report(report_id: str) -> Response:
    """Closing is a no-op: the server keeps no report state."""
    return _json({})


@router.post("/api/v1/submit_measurement", responses=_answers(400, 413, 415))
async def submit_measurement(request: Request) -> Response:
    """Single call: mint a report id and store the measurement (``content`` is a string).

    Downlink does not verify anonymous credentials: every measurement is stored with
    ``verification_status`` "u" (unverified).
    """
    m = metrics.of(request)
    cfg = config(request)
    try:
        raw = await _body(request, cfg)
        try:
            data = submission.decode(
                raw, request.headers.get("content-encoding"), cfg.max_decompressed_bytes
            )
        except submission.TooLarge as exc:
            raise Refusal(413, {"detail": str(exc)}) from None
        try:
            envelope = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise reportid.incorrect_format() from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("format"), str):
            raise reportid.incorrect_format()
        content_text = envelope.get("content")
        if not isinstance(content_text, str):
            raise Refusal(400, {"detail": "content must be the measurement as a JSON string"})
        try:
            content = orjson.loads(content_text)
        except orjson.JSONDecodeError:
            raise reportid.incorrect_format() from None
        if not isinstance(content, dict):
            raise reportid.incorrect_format()
        meta = submission.metadata_of(content)
        submission.check_metadata(meta)
    except Refusal as exc:
        m.refused.labels(str(exc.status)).inc()
        m.submissions.labels("refused").inc()
        return _json(exc.body, exc.status)
    report = reportid.OpenReport(
        probe_cc=meta.probe_cc,
        probe_asn=int(meta.probe_asn[2:]),
        test_name=meta.test_name,
        data_format_version=str(content.get("data_format_version", "")),
        format="json",
        software_name=str(content.get("software_name", "")),
        software_version=str(content.get("software_version", "")),
        test_start_time=str(content.get("test_start_time", "")),
        test_version=str(content.get("test_version", "")),
    )
    rid = reportid.mint(report, cfg.collector_id)
    content["report_id"] = rid
    received = datetime.now(UTC)
    stored = submission.stored_bytes({"format": "json", "content": content}, "u")
    uid = submission.mint_uid(received, meta.probe_cc, meta.test_name, stored)
    row = {
        "measurement_uid": uid,
        "report_id": rid,
        "probe_cc": meta.probe_cc,
        "probe_asn": report.probe_asn,
        "test_name": meta.test_name,
        "ts_reception": received.timestamp(),
        "is_verified": "u",
        "body": stored,
    }
    try:
        await _store(request, row)
    except StoreUnavailable:
        m.submissions.labels("unavailable").inc()
        return _unavailable()
    m.submissions.labels("stored").inc()
    return _json(
        {
            "measurement_uid": uid,
            "verification_status": "u",
            "submit_response": None,
            "protocol_version": envelope.get("protocol_version", 1),
            "error": None,
            "report_id": rid,
        }
    )
