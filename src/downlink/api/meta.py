"""Instance introspection: /-/health, /-/settings, /-/version and Prometheus /metrics."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from starlette.responses import Response

from downlink import __version__
from downlink.metrics import exposition
from downlink.security.auth import holds_token
from downlink.store.database import Store

router = APIRouter(tags=["meta"])


@router.get("/-/health")
async def health(request: Request) -> dict[str, Any]:
    """Say whether the store answers, and how many records wait for the writer."""
    store: Store = request.app.state.store

    def ping(conn: Any) -> bool:
        from sqlalchemy import text

        return bool(conn.execute(text("SELECT 1")).scalar_one() == 1)

    answer: dict[str, Any]
    try:
        ok = await store.read(ping)
    except Exception as exc:  # noqa: BLE001 - health reports the failure instead of raising
        answer = {"ok": False, "database": store.dialect, "error": str(exc)}
    else:
        answer = {"ok": ok, "database": store.dialect, "writer_queue": store.writer.depth}
    if store.spool is not None and holds_token(store.settings.api_tokens,
                                               request.scope["headers"]):
        # Records waiting in the spool, and those set aside there (downlink spool list).
        answer["spool"] = await to_thread.run_sync(store.spool_status)
    return answer


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
