"""Instance introspection: /-/health, /-/settings, /-/version and Prometheus /metrics."""

from __future__ import annotations

from typing import Any

import orjson
from anyio import fail_after, to_thread
from fastapi import APIRouter, Request
from sqlalchemy import Connection, text
from starlette.responses import Response

from downlink import __version__
from downlink.metrics import exposition
from downlink.security.auth import holds_token
from downlink.store.database import Store

router = APIRouter(tags=["meta"])


HEALTH_TIMEOUT_S = 5.0
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "This server takes records: the database answers, or its outage "
                         "goes to the spool, which has room."},
    503: {"description": "This server cannot take records: the database does not answer "
                         "and the spool is off or full."},
}


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1")).scalar_one()


async def _database_error(store: Store) -> str | None:
    """Why the store cannot take records now, or None when it can."""
    try:
        with fail_after(HEALTH_TIMEOUT_S):
            await to_thread.run_sync(store.run, _ping, abandon_on_cancel=True)
    except TimeoutError:
        return f"the database did not answer within {HEALTH_TIMEOUT_S:g} s"
    except Exception as exc:  # noqa: BLE001 - health reports the failure instead of raising
        return f"{type(exc).__name__}: {exc}"
    if not store.writer.running:
        return "the writer thread is not running"
    return None


def _spool_state(store: Store) -> str:
    spool = store.spool
    if spool is None:
        return "off"
    if spool.refusing:
        return "full"
    return "holding" if spool.active else "empty"


@router.get("/-/health", responses=HEALTH_RESPONSES, operation_id="health")
@router.head("/-/health", responses=HEALTH_RESPONSES, operation_id="health_head")
async def health(request: Request) -> Response:
    """Say whether this server can take records: 200 if so, else 503 (HEAD alike).

    It can while the database answers, and during an outage while the spool
    (``DOWNLINK_SPOOL_DIR``) has room. The body says which (``database_ok``,
    ``spool_state``: off, empty, holding or full); the database error and the spool's
    counts are for callers holding an API token (everyone when no tokens are set).
    """
    store: Store = request.app.state.store
    error = await _database_error(store)
    spool_state = _spool_state(store)
    ok = error is None or spool_state in ("empty", "holding")
    answer: dict[str, Any] = {
        "ok": ok,
        "database": store.dialect,
        "database_ok": error is None,
        "writer_queue": store.writer.depth,
        "spool_state": spool_state,
    }
    if holds_token(store.settings.api_tokens, request.scope["headers"]):
        if error is not None:
            answer["error"] = error
        if store.spool is not None:
            # Records waiting in the spool, and those set aside there (downlink spool list).
            answer["spool"] = await to_thread.run_sync(store.spool_status)
    return Response(
        orjson.dumps(answer),
        status_code=200 if ok else 503,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/-/settings")
async def settings(request: Request) -> dict[str, Any]:
    """Return the effective settings (database password hidden)."""
    store: Store = request.app.state.store
    return store.settings.public()


@router.get("/-/version")
async def version() -> dict[str, str]:
    """Return the Downlink version."""
    return {"version": __version__}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this server (every worker process's, summed)."""
    store: Store = request.app.state.store
    if store.spool is not None:
        await to_thread.run_sync(store.spool_status)  # refreshes the spool gauges
    body, content_type = exposition(store.metrics.registry)
    return Response(body, media_type=content_type)
