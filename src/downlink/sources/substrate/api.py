"""The substrate-analytics JSON API: nodes, their logs, peer reputation, DB stats, benchmarks.

Paths and response shapes follow substrate-analytics (``shared/reference/
substrate-analytics.md`` section 3) with its bugs fixed: a bad parameter is a 400 naming
it (the reference silently reset every filter and answered ``[]``), ``target`` works
without ``msg``, ``/reputation/{peer_id}`` reports the requested peer's value, unknown
nodes are listed one by one, and times may carry an offset or be epoch seconds.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request

from downlink.errors import BadRequest
from downlink.params import integer, parse_moment
from downlink.sources.substrate import config
from downlink.sources.substrate import queries as q
from downlink.store.database import Store
from downlink.store.storable import find_problem

router = APIRouter(tags=["nodes"])


LIMIT_MAX = 100_000
PEER_ID_MAX = 128
BENCHMARK_BODY_MAX = 64 * 1024

# Declared for the OpenAPI document; the values are read and checked from the query
# string by the helpers below (a bad one is a 400 naming it).
PeerId = Annotated[str, Query(description="The node's network id (libp2p peer id).")]
Msg = Annotated[str | None, Query(description="Only messages of this type.")]
Target = Annotated[str | None, Query(description="Only messages whose target is this.")]
Start = Annotated[str | None, Query(description="From this node time (epoch s or ISO).")]
End = Annotated[str | None, Query(description="Up to this node time (epoch s or ISO).")]
Limit = Annotated[str | None, Query(description=f"At most this many, 1 to {LIMIT_MAX}.")]
MaxAge = Annotated[str | None, Query(description="Peersets reported in the last N s.")]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    found = integer(raw, name, low, high)
    return default if found is None else found


def _text(raw: str | None, name: str) -> str | None:
    if raw is None:
        return None
    if not raw or len(raw) > PEER_ID_MAX or not raw.isprintable():
        raise BadRequest(f"{name} must be 1 to {PEER_ID_MAX} printable characters")
    return raw


def _peer(raw: str) -> str:
    found = _text(raw, "peer_id")
    assert found is not None
    return found


def _range(start_time: str | None, end_time: str | None) -> tuple[float | None, float | None]:
    start = parse_moment(start_time, "start_time")
    end = parse_moment(end_time, "end_time")
    if start is not None and end is not None and end < start:
        raise BadRequest("end_time is before start_time")
    return start, end


@router.get("/nodes")
async def nodes(request: Request) -> list[dict[str, Any]]:
    """List the newest connection of every node, with whether it is online."""
    store = _store(request)
    idle = config.of(store.settings)["ws_idle_timeout_s"]
    stale = idle if idle > 0 else 300.0
    return await store.read(q.list_nodes, time.time(), stale)


@router.get("/nodes/log_stats")
async def log_stats(request: Request, peer_id: PeerId) -> list[dict[str, Any]]:
    """Count a node's retained messages by type."""
    return await _store(request).read(q.log_stats, _peer(peer_id))


@router.get("/nodes/logs")
async def logs(
    request: Request,
    peer_id: PeerId,
    msg: Msg = None,
    target: Target = None,
    start_time: Start = None,
    end_time: End = None,
    limit: Limit = None,
) -> list[dict[str, Any]]:
    """Return a node's messages, newest first, filtered by type, target and node time."""
    peer = _peer(peer_id)
    kind = _text(msg, "msg")
    aim = _text(target, "target")
    start, end = _range(start_time, end_time)
    most = _int(limit, "limit", 10000, 1, LIMIT_MAX)

    def run(conn: Any) -> list[dict[str, Any]]:
        return q.node_logs(conn, peer, msg=kind, target=aim, start=start, end=end, limit=most)

    return await _store(request).read(run)


def _reputation_params(max_age_s: str | None, limit: str | None) -> tuple[float, int]:
    max_age = _int(max_age_s, "max_age_s", 60, 1, 10 * 365 * 86400)
    return time.time() - max_age, _int(limit, "limit", 100, 1, LIMIT_MAX)


@router.get("/reputation")
async def reputation(
    request: Request, max_age_s: MaxAge = None, limit: Limit = None
) -> list[dict[str, Any]]:
    """Each reporting node's latest peerset (within ``max_age_s``) as parallel arrays."""
    since, most = _reputation_params(max_age_s, limit)
    return await _store(request).read(q.latest_reputations, since, most)


@router.get("/reputation/logged")
async def reputation_logged(
    request: Request, max_age_s: MaxAge = None, limit: Limit = None
) -> list[dict[str, Any]]:
    """Like /reputation, with remote peers limited to nodes that send telemetry here."""
    since, most = _reputation_params(max_age_s, limit)

    def run(conn: Any) -> list[dict[str, Any]]:
        return q.latest_reputations(conn, since, most, only=q.known_peer_ids(conn))

    return await _store(request).read(run)


@router.get("/reputation/{peer_id}")
async def peer_reputation(
    peer_id: str,
    request: Request,
    start_time: Start = None,
    end_time: End = None,
    limit: Limit = None,
) -> list[dict[str, Any]]:
    """How every other node rated ``peer_id`` over time, newest first."""
    start, end = _range(start_time, end_time)
    most = _int(limit, "limit", 1000, 1, LIMIT_MAX)
    return await _store(request).read(q.peer_reputation, _peer(peer_id), start, end, most)


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
async def list_benchmarks(request: Request, limit: Limit = None) -> list[dict[str, Any]]:
    """List benchmark descriptions, newest first."""
    most = _int(limit, "limit", 1000, 1, LIMIT_MAX)
    return await _store(request).read(q.list_benchmarks, most)


_BENCHMARK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"setup": {"type": "object",
                                     "description": "The benchmark's description."}},
            "required": ["setup"],
        }}},
    },
}


@router.post("/benchmarks", status_code=201, openapi_extra=_BENCHMARK_BODY)
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
