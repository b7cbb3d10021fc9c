"""Engines for the store: one for reads, one for the single writer.

SQLite notes (why each pragma is there):

* ``journal_mode=WAL`` lets readers run while the writer commits.
* ``synchronous`` is a setting; ``FULL`` (default) fsyncs the WAL at every commit, so an
  acknowledged record survives power loss, not only a process crash. Group commit
  amortises that fsync over a whole batch.
* ``busy_timeout`` makes a second worker process wait for the write lock instead of
  failing at once.
* The writer opens its transactions with ``BEGIN IMMEDIATE``: a deferred transaction
  that reads first and writes later can fail with SQLITE_BUSY without waiting when two
  processes write at the same time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from downlink.settings import Settings


def is_sqlite(url: str) -> bool:
    """Return True when the URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def _normalise(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(engine: Engine, synchronous: str, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    if immediate:
        # Take over transaction control from pysqlite so BEGIN IMMEDIATE can be issued.
        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(settings: Settings, *, writer: bool = False, url: str | None = None) -> Engine:
    """Create an engine for reads (pooled) or for the single writer thread.

    ``url`` defaults to ``DATABASE_URL``; the read replica's engine passes its own.
    """
    url = _normalise(url or settings.database_url)
    if is_sqlite(url):
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
        if writer:
            connect_args["isolation_level"] = None
        engine = create_engine(url, connect_args=connect_args, pool_size=8, max_overflow=8)
        _sqlite_pragmas(engine, settings.sqlite_synchronous.upper(), immediate=writer)
        return engine
    # No server-side prepared statements: psycopg prepares a statement on its fifth
    # use and PostgreSQL may then keep a generic plan made while the tables were
    # nearly empty (a fresh database ingested at a third of its speed for the life of
    # the process, bench/ingest.py). Every statement here is short, so planning each
    # execution costs little.
    pg_args = {"prepare_threshold": None}
    if writer:
        return create_engine(
            url, pool_size=2, max_overflow=0, pool_pre_ping=True, connect_args=pg_args
        )
    return create_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args=pg_args
    )
