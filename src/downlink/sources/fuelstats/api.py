"""The fuel-stats JSON API (reference B7), under ``/api/v1/json/``.

Paging is the original's: a query parameter ``paging_params={"limit": N, "offset":
M}`` (JSON); a value that is not a JSON object falls back to the defaults (limit 1000,
offset 0). Errors use the source's ``{"status": "error", "message": ...}`` envelope;
an unknown path under ``/api/v1/json/`` or ``/api/v1/csv/`` is a 404 in it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from downlink.sources.fuelstats import queries
from downlink.sources.fuelstats.context import context, store
from downlink.sources.fuelstats.errors import (
    FuelError,
    error_response,
    method_not_allowed,
    not_found,
)
from downlink.sources.fuelstats.reads import reads_of

PREFIXES = ("/api/v1/json", "/api/v1/csv", "/api/v1/fuel")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# The public read API (aggregates only; no installation's data): open without a token.
PUBLIC_PATHS = frozenset(("/api/v1/json/report/installations", "/api/v1/json/summary"))
LIMIT_DEFAULT = 1000
LIMIT_MAX = 10000

Endpoint = Callable[[Request], Awaitable[Response]]


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


def paging(request: Request) -> tuple[int, int]:
    """The (limit, offset) of ``paging_params``; 400 for a bad number in an object."""
    raw = request.query_params.get("paging_params")
    try:
        params = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        params = None
    if not isinstance(params, dict):
        return LIMIT_DEFAULT, 0
    limit = params.get("limit", LIMIT_DEFAULT)
    offset = params.get("offset", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= LIMIT_MAX:
        raise FuelError(400, f"paging_params.limit must be an integer from 0 to {LIMIT_MAX}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**62:
        raise FuelError(400, "paging_params.offset must be a non-negative integer")
    return limit, offset


def guarded(endpoint: Endpoint) -> Endpoint:
    """Serve GET only (405 otherwise) and answer :class:`FuelError` in the envelope."""

    async def run(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            err = method_not_allowed(request.method, request.url.path)
            return error_response(err.status, err.message)
        try:
            return await endpoint(request)
        except FuelError as exc:
            return error_response(exc.status, exc.message)

    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    return run


async def installation_info(request: Request) -> Response:
    """One installation by master node uid (404 if unknown)."""
    uid = request.path_params["uid"]
    found = await store(request).read(queries.installation_info, uid)
    if found is None:
        raise FuelError(404, f"404 Not Found: no installation {uid!r}")
    return _json(found)


async def action_logs(request: Request) -> Response:
    """A master node's action logs, paged."""
    limit, offset = paging(request)
    uid = request.path_params["uid"]
    reads = reads_of(request)
    return _json(await reads.read(reads.action_logs, uid, limit, offset))


async def oswls(request: Request) -> Response:
    """A master node's OSWL snapshots (optionally of one resource type), paged."""
    limit, offset = paging(request)
    uid = request.path_params["uid"]
    kind = request.path_params.get("resource_type")
    return _json(await store(request).read(queries.oswls_of, uid, kind, limit, offset))


async def filtered(request: Request) -> Response:
    """The installations the filtering rules hide, paged."""
    limit, offset = paging(request)
    return _json(await store(request).read(queries.filtered_installations, limit, offset))


async def summary(request: Request) -> Response:
    """Counts of installations (filtered or not), action logs and OSWL snapshots."""
    return _json(await store(request).read(queries.summary))


async def installations_report(request: Request) -> Response:
    """The dashboard report of one release (``release=``) or all; cached.

    One database pass computes every release and fills the cache for all of them;
    ``refresh=1`` recomputes. Collector writes in this process empty the cache.
    """
    release = request.query_params.get("release") or None
    refresh = request.query_params.get("refresh", "") not in ("", "0", "false")
    ctx = context(request)
    ttl = ctx.settings.report_cache_s
    now = time.monotonic()
    cached = None if refresh else ctx.report_cache.get(release)
    if cached is not None and cached[0] > now:
        return _json(cached[1])
    reports = await store(request).read(queries.installations_report)
    ctx.report_cache.clear()
    if ttl > 0:
        for key, value in reports.items():
            ctx.report_cache[key] = (now + ttl, value)
    found = reports.get(release)
    if found is None:
        found = queries.installations_report_empty()
    return _json(found)


async def unknown(request: Request) -> Response:
    """Anything else under the source's prefixes: 404 in the source's envelope."""
    err = not_found(request.url.path)
    return error_response(err.status, err.message)


def routes() -> list[BaseRoute]:
    """The JSON API routes, then the catch-alls of the source's API prefixes."""
    table: list[tuple[str, Endpoint]] = [
        ("/api/v1/json/installation_info/{uid}", installation_info),
        ("/api/v1/json/action_logs/{uid}", action_logs),
        ("/api/v1/json/oswls/{uid}", oswls),
        ("/api/v1/json/oswls/{uid}/{resource_type}", oswls),
        ("/api/v1/json/installation_infos/filtered", filtered),
        ("/api/v1/json/summary", summary),
        ("/api/v1/json/report/installations", installations_report),
    ]
    return [Route(path, guarded(endpoint), methods=ALL_METHODS) for path, endpoint in table]


def catch_all() -> list[BaseRoute]:
    """404s for unknown paths under the source's prefixes (mounted after every route)."""
    return [
        Route(f"{prefix}/{{rest:path}}", unknown, methods=ALL_METHODS, include_in_schema=False)
        for prefix in PREFIXES
    ]
