"""Mount the OONI source on a Downlink app until the core's source registry does it.

``make_app`` includes the source's routers into ``create_app``'s app; ``migrate`` runs
the core and OONI migrations (the OONI folder as an extra Alembic version location);
``drain`` applies the fastpath consumer to every logged measurement, as the core's
consumer runner will.
"""

from __future__ import annotations

import os

from alembic import command
from fastapi import FastAPI
from sqlalchemy import create_engine, select

from downlink.app import create_app
from downlink.settings import Settings, from_env
from downlink.sources.base import LogRecord
from downlink.sources.ooni.consumer import score_batch
from downlink.sources.ooni.source import SOURCE
from downlink.sources.ooni.tables import measurements
from downlink.store import migrate as core_migrate
from downlink.store.engine import _normalise


def migrate(database_url: str) -> None:
    """Apply the core and OONI migrations."""
    engine = create_engine(_normalise(database_url))
    try:
        cfg = core_migrate.alembic_config(engine)
        assert SOURCE.migrations is not None
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option(
            "version_locations",
            os.pathsep.join([str(core_migrate.MIGRATIONS / "versions"), str(SOURCE.migrations)]),
        )
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    finally:
        engine.dispose()


def make_app(settings: Settings, *, run_migrations: bool = True) -> FastAPI:
    """create_app with the OONI routers mounted (OONI's migrations: ``migrate``)."""
    app = create_app(settings, run_migrations=run_migrations)
    for router in SOURCE.routers:
        app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (the caller has run ``migrate``)."""
    return make_app(from_env(), run_migrations=False)


def drain(database_url: str) -> int:
    """Score every logged measurement (idempotent); returns how many rows were written."""
    engine = create_engine(_normalise(database_url))
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(measurements).order_by(measurements.c.id)).mappings()
            batch = [LogRecord(r["id"], r["received_at"], dict(r)) for r in rows]
            return score_batch(conn, batch)
    finally:
        engine.dispose()
