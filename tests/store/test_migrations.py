"""The migrations build exactly the schema in tables.py, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from downlink.store import migrate
from downlink.store.tables import metadata


def test_migrations_match_the_tables_module(db_url: str) -> None:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert migrate.pending(engine)
        migrate.upgrade(engine)
        assert migrate.pending(engine) == []
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], diff
    finally:
        engine.dispose()
