"""The migrations build exactly the schema of the core's and the sources' tables."""

from __future__ import annotations

from sqlalchemy import create_engine

from downlink.sources.registry import load
from downlink.store import migrate
from downlink.store.tables import metadata


def test_migrations_match_the_tables_modules(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert migrate.pending(engine)
        migrate.upgrade(engine)
        assert migrate.pending(engine) == []
        with engine.connect() as conn:
            diff = migrate.schema_diff(conn, [metadata, *load(()).metadata()])
        assert diff == [], diff
    finally:
        engine.dispose()
