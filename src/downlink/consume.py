"""The application of ``downlink consume``: the background work in a process of its own.

It runs what ``downlink serve`` runs after the ack (:class:`~downlink.background.Background`:
the consumers, the job runner, the archive closer) and serves nothing but its own
state: ``/-/health`` (200 while the database answers and its loops run, else 503)
and ``/metrics`` (its counters: records handled, failures; the lag gauges too, which
``serve`` also shows from the cursors). Several may run against one database: a
consumer's batch is claimed with its cursor row (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the single writer on SQLite) and a job by a conditional ``UPDATE``, so
each record is handled once. SIGTERM (uvicorn's lifespan) lets the batch and the job
step in flight end; SIGKILL rolls the batch back, and it is read again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from anyio import fail_after, to_thread
from sqlalchemy import Connection, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from downlink import __version__
from downlink.analytics.shipper import shipping
from downlink.background import Background
from downlink.gc_pauses import after_startup
from downlink.metrics import Metrics, exposition
from downlink.settings import Settings, from_env
from downlink.store.database import Store

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1")).scalar_one()


def create_consume_app(
    settings: Settings | None = None, *, run_migrations: bool = True
) -> Starlette:
    """Build the consume process's application; nothing connects until it starts."""
    settings = settings or from_env()
    # No spool here: a spool belongs to the `serve` process that wrote it (its drainer
    # runs there); this process writes derived rows only, and retries while it is down.
    settings = settings.replace(spool_dir="")
    store = Store(settings, Metrics(settings.registry))
    analytics = shipping(settings)
    background = Background(settings, store, analytics, run=True)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        store.start(run_migrations=run_migrations)
        if analytics is not None:
            try:
                await to_thread.run_sync(analytics.ensure_schema)
            except Exception as exc:  # noqa: BLE001 - the shippers retry
                log.warning("analytics store not ready (the shippers retry): %s", exc)
        background.start()
        try:
            with after_startup(store.metrics.gc, settings.gc_freeze):
                yield
        finally:
            await background.stop()
            store.close()
            if analytics is not None:
                analytics.ch.close()

    async def health(_request: Request) -> Response:
        error: str | None = None
        try:
            with fail_after(HEALTH_TIMEOUT_S):
                await to_thread.run_sync(store.run, _ping, abandon_on_cancel=True)
        except TimeoutError:
            error = f"the database did not answer within {HEALTH_TIMEOUT_S:g} s"
        except Exception as exc:  # noqa: BLE001 - health reports the failure
            error = f"{type(exc).__name__}: {exc}"
        running = background.running()
        runner = background.consumer_runner
        answer: dict[str, Any] = {
            "ok": error is None and running,
            "role": "consume",
            "version": __version__,
            "database": store.dialect,
            "database_ok": error is None,
            "running": running,
            "consumers": [b.name for b in runner.bounds],
            "lag_checked_at": runner.latest_at,
            "lag_seconds": {n: e["lag_seconds"] for n, e in runner.latest.items()},
        }
        if error is not None:
            answer["error"] = error
        return Response(
            orjson.dumps(answer),
            status_code=200 if answer["ok"] else 503,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(_request: Request) -> Response:
        body, content_type = exposition(store.metrics.registry)
        return Response(body, media_type=content_type)

    app = Starlette(
        routes=[
            Route("/-/health", health, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.background = background
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn (``downlink consume``): settings from the environment."""
    return create_consume_app(
        from_env(), run_migrations=os.environ.get("DOWNLINK_SKIP_MIGRATIONS") != "1"
    )
