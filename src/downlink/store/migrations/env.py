"""Alembic environment: runs against the connection or URL given by downlink.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from downlink.store.tables import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        # The core's tables and every source's (used by autogenerate only).
        target_metadata=[metadata, *config.attributes.get("source_metadata", [])],
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
