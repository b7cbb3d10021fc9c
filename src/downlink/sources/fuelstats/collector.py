"""The fuel-stats collector: what Fuel's ``statsenderd`` posts to (reference B6).

``GET /api/v1/ping/``, ``POST /api/v1/installation_structure/``, ``POST
/api/v1/action_logs/`` and ``POST /api/v1/oswl_stats/``, each with and without the
trailing slash (the original redirected the slash-less form; statsenderd always sends
it). Bodies are JSON checked against the original's draft-04 schemas; every answer
carries ``exec_time``; every error is ``{"status": "error", "message": ...}`` with
400, 404 or 405 (503 while the database is down), never a 500.

Every answer comes after the data is committed: the items go through the core's
group-commit writer (``Store.write_to`` with this source's sinks, ``sink.py``), so
concurrent posts share commits, an outage with ``DOWNLINK_SPOOL_DIR`` set is answered
after the items are fsynced in the local spool, and overload or an outage without a
spool is 503 with ``Retry-After``. Items the database refuses are reported ``failed``
item by item, so the sender keeps those items and sends them again; nothing is
acknowledged and then dropped. A spooled structure is answered 201, spooled action
logs and OSWL snapshots ``added``: the sender is done with them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from downlink.security.senders import SECRET_HEADER, SendersUnavailable, retry_after
from downlink.sources.base import SenderRule
from downlink.sources.fuelstats import fast_check, schemas, sink
from downlink.sources.fuelstats.context import FuelContext, context, store
from downlink.sources.fuelstats.errors import FuelError, error_response, method_not_allowed
from downlink.sources.fuelstats.filtering import is_filtered, release_of
from downlink.sources.fuelstats.shape import task_fields
from downlink.sources.runtime import senders_of
from downlink.store.envelope import ADDED, EXISTED, FAILED, UPDATED, Envelope
from downlink.store.sinks import Sink
from downlink.store.writer import QueueFull, StoreUnavailable

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
JSON_TYPES = ("application/json",)


def _ok(started: float, status: int = 200, **extra: Any) -> Response:
    body = {"status": "ok", "exec_time": round(time.perf_counter() - started, 6), **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _json_body(request: Request, schema: str) -> Any:
    """Parse and validate the body off the event loop; :class:`FuelError` 400 if bad."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES and not media.endswith("+json"):
        raise FuelError(400, "Content-Type must be application/json")
    raw = await request.body()
    return await to_thread.run_sync(_parse, raw, schema)


def _parse(raw: bytes, schema: str) -> Any:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FuelError(400, f"the body is not JSON: {exc}") from None
    if schema == "action_logs" and fast_check.action_logs_valid(raw):
        return body  # surely valid (the schema decides every other body)
    problem = schemas.request_error(schema, body)
    if problem is not None:
        raise FuelError(400, problem)
    return body


Handler = Callable[[Request, float], Awaitable[Response]]

SOURCE = "fuelstats"

# Trust on first use of master node uids (docs/senders.md): statsenderd cannot be
# changed, and Fuel's own data is worth more than an upload's, so a post naming a uid
# bound to another sender is refused (403) and nothing of it is stored.
SENDER_RULE = SenderRule(
    id_name="master_node_uid",
    on_mismatch="refuse",
    rule="posts naming a master_node_uid bound to another network, secret or "
    "certificate are refused with 403 and nothing of them is stored",
)


async def _check_senders(request: Request, uids: Any) -> dict[str, str]:
    """Rate-limit and check the master node uids a post names (429, 403: FuelError).

    Returns the headers to add to the answer: the new secret of a uid this post bound
    (only when the post names one uid; statsenderd sends one master node's data).
    """
    guard = senders_of(request)
    ids = {str(uid) for uid in uids}
    wait = guard.rate_wait(SOURCE, ids)
    if wait > 0:
        raise FuelError(429, "too many posts for this master_node_uid; retry later",
                        {"Retry-After": retry_after(wait)})
    if not guard.binds(SOURCE):
        return {}
    proof = guard.proof(request.headers.raw, request.scope.get("client"))
    try:
        verdicts = await guard.check(SOURCE, ids, proof)
    except SendersUnavailable:
        raise FuelError(503, "the database is unavailable; send it again later") from None
    refused = sorted(uid for uid, verdict in verdicts.items() if not verdict.matches)
    if refused:
        raise FuelError(
            403,
            f"master_node_uid {', '.join(refused)} is bound to another sender; nothing was "
            "stored (the server's operator can re-bind it: downlink senders rebind)",
        )
    secrets = [v.secret for v in verdicts.values() if v.secret is not None]
    return {SECRET_HEADER: secrets[0]} if len(verdicts) == 1 and secrets else {}


@dataclass(frozen=True)
class _Endpoint:
    """One collector resource: the method it serves; any other method gets 405."""

    method: str
    handler: Handler

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        if request.method != self.method and not (
            self.method == "GET" and request.method == "HEAD"
        ):
            err = method_not_allowed(request.method, request.url.path)
            return error_response(err.status, err.message, _elapsed(started))
        try:
            return await self.handler(request, started)
        except FuelError as exc:
            return error_response(exc.status, exc.message, _elapsed(started), exc.headers)


def _with(headers: dict[str, str], response: Response) -> Response:
    response.headers.update(headers)
    return response


def _elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 6)


async def _write(request: Request, to: Sink, items: list[Envelope]) -> list[Envelope]:
    """Items through the group-commit writer; 503 with Retry-After when it cannot."""
    try:
        return await store(request).write_to(to, items)
    except QueueFull as exc:
        raise FuelError(503, f"Server busy, retry later: {exc}", {"Retry-After": "1"}) from None
    except StoreUnavailable as exc:
        log.warning("%d %s items not stored: %s", len(items), to.name, exc)
        raise FuelError(503, "the database is unavailable; send it again later",
                        {"Retry-After": "5"}) from None


async def ping(_request: Request, started: float) -> Response:
    """Health check for the sender: 200 ``{"status": "ok"}``."""
    return _ok(started)


async def installation_structure(request: Request, started: float) -> Response:
    """Upsert a master node's structure: 201 when new, 200 when it replaced one."""
    body = await _json_body(request, "installation_structure")
    ctx = context(request)
    structure = body["installation_structure"]
    headers = await _check_senders(request, (structure["master_node_uid"],))
    row = sink.StructureRow(
        master_node_uid=structure["master_node_uid"],
        structure=ctx.sanitizer.structure(structure),
        release=release_of(structure),
        is_filtered=is_filtered(structure, ctx.rules.current()),
    )
    (item,) = await _write(request, sink.STRUCTURES, [sink.structure_item(row, time.time())])
    if item.status == FAILED:
        raise FuelError(400, item.refused or "the store refused this installation structure")
    ctx.report_cache.clear()
    return _with(headers, _ok(started, 200 if item.status == UPDATED else 201))


def _action_log_rows(ctx: FuelContext, items: list[dict[str, Any]], now: float) -> tuple[
    dict[tuple[str, int], str], list[dict[str, Any]]
]:
    """Index the items (the last of a duplicate key wins); split off running tasks."""
    by_key = {(item["master_node_uid"], int(item["external_id"])): item for item in items}
    statuses: dict[tuple[str, int], str] = {}
    rows: list[dict[str, Any]] = []
    for key, item in by_key.items():
        body = item["body"]
        if body.get("action_type") == "nailgun_task" and not body.get("end_timestamp"):
            statuses[key] = "skipped"  # a running task would be frozen in its first state
            continue
        statuses[key] = "failed"  # until its chunk commits
        rows.append(
            {
                "master_node_uid": key[0],
                "external_id": key[1],
                "body": ctx.sanitizer.action_log_body(body),
                "action_type": _text(body.get("action_type")),
                "action_name": _text(body.get("action_name")),
                **task_fields(body),
                "ts_reception": now,
            }
        )
    return statuses, rows


def _wake_consumers(request: Request) -> None:
    """Have the core's consumers (the failure reports) look at the new logs now."""
    runner = getattr(request.app.state, "consumer_runner", None)
    if runner is not None:
        runner.wake()


def _text(value: Any) -> str | None:
    return value.replace("\x00", "") if isinstance(value, str) else None


async def action_logs(request: Request, started: float) -> Response:
    """Store action logs; per item ``added``, ``existed``, ``skipped`` or ``failed``."""
    body = await _json_body(request, "action_logs")
    if "action_logs" not in body:
        raise FuelError(400, "'action_logs' is a required property")
    ctx = context(request)
    headers = await _check_senders(
        request, (item["master_node_uid"] for item in body["action_logs"])
    )
    statuses, rows = await to_thread.run_sync(
        _action_log_rows, ctx, body["action_logs"], time.time()
    )
    results = await _write(request, sink.ACTION_LOGS, [Envelope(row) for row in rows])
    for item in results:
        key = (item.row["master_node_uid"], item.row["external_id"])
        statuses[key] = _status(item, (ADDED, EXISTED))
    if rows:
        ctx.report_cache.clear()
        _wake_consumers(request)
    items = [
        {"master_node_uid": uid, "external_id": ext, "status": status}
        for (uid, ext), status in statuses.items()
    ]
    return _with(headers, _ok(started, action_logs=items))


def _status(item: Envelope, known: tuple[str, ...]) -> str:
    """What the sender is told of one item: spooled ones are ``added`` (kept for good)."""
    if item.spooled:
        return ADDED
    if item.status not in known:
        if item.status != FAILED:
            log.error("unexpected status %r of a fuel-stats item", item.status)
        return FAILED
    return item.status


def _oswl_rows(items: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """One row per (master node, id, resource type); the last of duplicates wins."""
    by_key: dict[sink.OswlKey, dict[str, Any]] = {}
    for item in items:
        resource_type = item.get("resource_type")
        if not resource_type:
            raise FuelError(400, f"oswl_stats: item {item['id']} has no resource_type")
        key = (item["master_node_uid"], int(item["id"]), resource_type)
        by_key.pop(key, None)
        by_key[key] = {
            "master_node_uid": key[0],
            "external_id": key[1],
            "resource_type": key[2],
            "cluster_id": item["cluster_id"],
            "created_date": item["created_date"],
            "updated_time": item["updated_time"],
            "resource_data": item["resource_data"],
            "resource_checksum": item["resource_checksum"],
            "version_info": item.get("version_info"),
            "ts_reception": now,
        }
    return list(by_key.values())


async def oswl_stats(request: Request, started: float) -> Response:
    """Upsert OpenStack workload snapshots; per item ``added``, ``updated`` or ``failed``."""
    body = await _json_body(request, "oswl")
    rows = _oswl_rows(body["oswl_stats"], time.time())
    headers = await _check_senders(request, (row["master_node_uid"] for row in rows))
    results = await _write(request, sink.OSWLS, [Envelope(row) for row in rows])
    items = [
        {"master_node_uid": item.row["master_node_uid"], "id": item.row["external_id"],
         "status": _status(item, (ADDED, UPDATED))}
        for item in results
    ]
    if rows:
        context(request).report_cache.clear()
    return _with(headers, _ok(started, oswl_stats=items))


RESOURCES: dict[str, tuple[str, Handler]] = {
    "/api/v1/ping": ("GET", ping),
    "/api/v1/installation_structure": ("POST", installation_structure),
    "/api/v1/action_logs": ("POST", action_logs),
    "/api/v1/oswl_stats": ("POST", oswl_stats),
}

# The paths that deliver telemetry (POST), and the ping the sender tries first (GET):
# both stay open when API tokens are configured (see Source.open_reads).
INGEST_PATHS = frozenset(
    path + slash
    for path, (method, _) in RESOURCES.items()
    if method == "POST"
    for slash in ("", "/")
)
OPEN_PATHS = frozenset(("/api/v1/ping", "/api/v1/ping/"))


def routes() -> list[BaseRoute]:
    """The collector's routes: every resource with and without its trailing slash."""
    found: list[BaseRoute] = []
    for path, (method, handler) in RESOURCES.items():
        endpoint = _Endpoint(method, handler)
        for variant in (path + "/", path):
            found.append(
                Route(variant, endpoint.__call__, methods=ALL_METHODS, include_in_schema=False)
            )
    return found
