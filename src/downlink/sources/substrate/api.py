"""The substrate-analytics JSON API: nodes, their logs, peer reputation, DB stats, benchmarks.

Paths and response shapes follow substrate-analytics (``shared/reference/
substrate-analytics.md`` section 3) with its bugs fixed: a bad parameter is a 400 naming
it (the reference silently reset every filter and answered ``[]``), ``target`` works
without ``msg``, ``/reputation/{peer_id}`` reports the requested peer's value, unknown
nodes are listed one by one, and times may carry an offset or be epoch seconds.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request

from downlink.api.errors import BadRequest
from downlink.api.params import parse_moment
from downlink.sources.substrate import queries as q
from downlink.store.database import Store
from downlink.store.storable import find_problem

router = APIRouter(tags=["nodes"])

LIMIT_MAX = 100_000
PEER_ID_MAX = 128
BENCHMARK_BODY_MAX = 64 * 1024


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return value


def parse_time(params: dict[str, str], name: str) -> float | None:
    """Parse epoch seconds or an ISO 8601 time (UTC when it has no offset)."""
    return parse_moment(params.get(name), name)


def _text(params: dict[str, str], name: str, *, required: bool = False) -> str | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not raw or len(raw) > PEER_ID_MAX or not raw.isprintable():
        raise BadRequest(f"{name} must be 1 to {PEER_ID_MAX} printable characters")
    return raw


def _range(params: dict[str, str]) -> tuple[float | None, float | None]:
    start = parse_time(params, "start_time")
    end = parse_time(params, "end_time")
    if start is not None and end is not None and end < start:
        raise BadRequest("end_time is before start_time")
    return start, end


@router.get("/nodes")
async def nodes(request: Request) -> list[dict[str, Any]]:
    """List the newest connection of every node, with whether it is online."""
    store = _store(request)
    idle = store.settings.ws_idle_timeout_s
    stale = idle if idle > 0 else 300.0
    return await store.read(q.list_nodes, time.time(), stale)


@router.get("/nodes/log_stats")
async def log_stats(request: Request) -> list[dict[str, Any]]:
    """Count a node's retained messages by type."""
    peer_id = _text(dict(request.query_params), "peer_id", required=True)
    assert peer_id is not None
    return await _store(request).read(q.log_stats, peer_id)


@router.get("/nodes/logs")
async def logs(request: Request) -> list[dict[str, Any]]:
    """Return a node's messages, newest first, filtered by type, target and node time."""
    params = dict(request.query_params)
    peer_id = _text(params, "peer_id", required=True)
    assert peer_id is not None
    msg = _text(params, "msg")
    target = _text(params, "target")
    start, end = _range(params)
    limit = _int(params, "limit", 10000, 1, LIMIT_MAX)

    def run(conn: Any) -> list[dict[str, Any]]:
        return q.node_logs(conn, peer_id, msg=msg, target=target, start=start, end=end, limit=limit)

    return await _store(request).read(run)


def _reputation_params(request: Request) -> tuple[float, int]:
    params = dict(request.query_params)
    max_age = _int(params, "max_age_s", 60, 1, 10 * 365 * 86400)
    limit = _int(params, "limit", 100, 1, LIMIT_MAX)
    return time.time() - max_age, limit


@router.get("/reputation")
async def reputation(request: Request) -> list[dict[str, Any]]:
    """Each reporting node's latest peerset (within ``max_age_s``) as parallel arrays."""
    since, limit = _reputation_params(request)
    return await _store(request).read(q.latest_reputations, since, limit)


@router.get("/reputation/logged")
async def reputation_logged(request: Request) -> list[dict[str, Any]]:
    """Like /reputation, with remote peers limited to nodes that send telemetry here."""
    since, limit = _reputation_params(request)

    def run(conn: Any) -> list[dict[str, Any]]:
        return q.latest_reputations(conn, since, limit, only=q.known_peer_ids(conn))

    return await _store(request).read(run)


@router.get("/reputation/{peer_id}")
async def peer_reputation(peer_id: str, request: Request) -> list[dict[str, Any]]:
    """How every other node rated ``peer_id`` over time, newest first."""
    params = dict(request.query_params)
    peer = _text({"peer_id": peer_id}, "peer_id", required=True)
    assert peer is not None
    start, end = _range(params)
    limit = _int(params, "limit", 1000, 1, LIMIT_MAX)
    return await _store(request).read(q.peer_reputation, peer, start, end, limit)


def _pretty(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.0f} {unit}"
        value /= 1024
    return f"{size} bytes"


@router.get("/stats/db")
async def db_stats(request: Request) -> list[dict[str, Any]]:
    """Size of every table and index, largest first."""
    rows = await _store(request).read(q.relation_sizes)
    return [{**row, "size": _pretty(row["bytes"])} for row in rows]


@router.get("/benchmarks")
async def list_benchmarks(request: Request) -> list[dict[str, Any]]:
    """List benchmark descriptions, newest first."""
    limit = _int(dict(request.query_params), "limit", 1000, 1, LIMIT_MAX)
    return await _store(request).read(q.list_benchmarks, limit)


@router.post("/benchmarks", status_code=201)
async def add_benchmark(request: Request) -> dict[str, Any]:
    """Store a benchmark: body ``{"setup": {...}}``; answers the stored row."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BENCHMARK_BODY_MAX:
            raise BadRequest(f"body is larger than {BENCHMARK_BODY_MAX} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest('body must be JSON: {"setup": {...}}') from None
    if not isinstance(doc, dict) or "setup" not in doc:
        raise BadRequest("body must be a JSON object with a `setup` member")
    if not isinstance(doc["setup"], dict):
        raise BadRequest("`setup` must be a JSON object")
    unstorable = find_problem(doc["setup"], "setup")
    if unstorable is not None:  # one text rule on both databases (store/storable.py)
        raise BadRequest(f"{unstorable[0]} contains {unstorable[1]}, which cannot be stored")
    return await _store(request).admin_write(q.add_benchmark, doc["setup"], time.time())
