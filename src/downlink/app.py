"""create_app(settings): the only module that wires every part together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI

from downlink import __version__, security
from downlink.access_log import AccessLog
from downlink.analytics.shipper import shipping
from downlink.api import errors, meta, openapi, records
from downlink.background import Background
from downlink.direct import Downlink
from downlink.fresh_reads import FreshReads
from downlink.gc_pauses import after_startup
from downlink.metrics import Metrics
from downlink.security.senders import SenderGuard
from downlink.settings import Settings, from_env
from downlink.sources.base import SenderRule
from downlink.sources.registry import Sources
from downlink.store.database import Store
from downlink.store.retention import Maintenance
from downlink.web import routes as web_routes

log = logging.getLogger(__name__)


def sender_rules(sources: Sources) -> dict[str, SenderRule]:
    """Each source's sender rule (``Source.senders``)."""
    rules = {s.name: s.senders for s in sources if s.senders is not None}
    return rules


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    """Build the ASGI application; nothing connects until it starts."""
    settings = settings or from_env()
    sources = settings.registry
    metrics = Metrics(sources)
    store = Store(settings, metrics)
    maintenance = Maintenance(store)
    senders = SenderGuard(store, settings, sender_rules(sources))
    # The optional ClickHouse analytics store (its reads; its shippers are consumers).
    analytics = shipping(settings)
    # Consumers, jobs, the archive closer: here, or in `downlink consume` (then only
    # the consumers' lag is watched here, for /metrics and the pages).
    background = Background(
        settings, store, analytics, run=settings.run_consumers == "in-process"
    )

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        store.start(run_migrations=run_migrations)
        if analytics is not None:
            try:
                await to_thread.run_sync(analytics.ensure_schema)
            except Exception as exc:  # noqa: BLE001 - ingestion never waits for ClickHouse
                log.warning("analytics store not ready (the shippers retry): %s", exc)
        maintenance.start()
        background.start()
        try:
            # A source's own background work for the life of the app (its
            # ``extra["lifespan"]``: an async context manager factory taking the app).
            async with AsyncExitStack() as stack:
                for source in sources:
                    hook = source.extra.get("lifespan")
                    if hook is not None:
                        await stack.enter_async_context(hook(app_))
                stack.enter_context(after_startup(metrics.gc, settings.gc_freeze))
                yield
        finally:
            await background.stop()
            await maintenance.stop()
            store.close()
            if analytics is not None:
                analytics.ch.close()

    app = Downlink(
        title="Downlink",
        version=__version__,
        summary="Telemetry collection and analytics server",
        lifespan=lifespan,
        # /docs is the web UI's own page (vendored Swagger UI, no CDN): web/pages/apidocs.py
        docs_url=None,
        redoc_url=None,
    )
    if settings.access_log != "off":
        app.access_log = AccessLog(settings.access_log)
    app.state.store = store
    app.state.settings = settings
    app.state.job_runner = background.job_runner
    app.state.consumer_runner = background.consumer_runner
    app.state.sources = sources
    app.state.analytics = analytics
    app.state.senders = senders
    errors.install(app)
    security.install(app, settings)
    if settings.database_read_url:
        # Read-your-writes with the replica (the collector's direct routes never read).
        app.add_middleware(FreshReads)
    app.include_router(records.router)
    app.include_router(meta.router)
    for source in sources:
        for router in source.routers:
            app.include_router(router)
        app.router.routes.extend(source.routes)
    # Hot path: try the sources' direct paths (Clear Linux's collector) before every
    # router, "/" excepted (saves ~50 us of route matching per record;
    # bench/ingest.py, docs/performance.md).
    first = {p for s in sources for p in s.direct_posts if p != "/"}
    app.router.routes.sort(key=lambda r: getattr(r, "path", None) not in first)
    # Hotter still: posts skip the middleware stack, guarded by the same checks.
    for source in sources:
        for path, endpoint in source.direct_posts.items():
            app.add_direct_route("POST", path, security.guard(app, endpoint, settings))
        for prefix, endpoint in source.direct_post_prefixes.items():
            app.add_direct_prefix("POST", prefix, security.guard(app, endpoint, settings))
    web_routes.install(app, settings)

    def openapi_paths() -> dict[str, Any]:
        found: dict[str, Any] = {}
        for source in sources:
            if source.openapi_paths is not None:
                found.update(source.openapi_paths())
        return found

    openapi.install(app, openapi_paths)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    import os

    return create_app(from_env(), run_migrations=os.environ.get("DOWNLINK_SKIP_MIGRATIONS") != "1")
