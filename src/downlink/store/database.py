"""The Store: engines, migrations and the writer behind one object.

Reads run in a worker thread on a pooled engine (``await store.read(fn, ...)``, on the
read replica when ``DATABASE_READ_URL`` names one: :mod:`downlink.store.replica`;
``await store.read_primary(fn, ...)`` for the server's own machinery); writes go through
the single group-commit :class:`~downlink.store.writer.Writer` or ``admin_write``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from anyio import to_thread
from sqlalchemy import Engine

from downlink.metrics import Metrics
from downlink.settings import Settings
from downlink.store import migrate
from downlink.store.engine import is_sqlite, make_engine
from downlink.store.envelope import FAILED, Envelope, Row, wrap
from downlink.store.refusals import store_items
from downlink.store.replica import FRESHNESS, Replica, current_lsn
from downlink.store.sinks import RecordsSink, Sink
from downlink.store.spool import Drainer, Spool
from downlink.store.storable import unstorable_field
from downlink.store.writer import BatchProcessor, RecordsRefused, StoreUnavailable, Writer

T = TypeVar("T")


class Store:
    """Everything that touches the database for one server process."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        processors: Sequence[BatchProcessor] = (),
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engine: Engine = make_engine(settings)
        self.write_engine: Engine = make_engine(settings, writer=True)
        self.replica: Replica | None = None
        if settings.database_read_url:
            self.replica = Replica(
                make_engine(settings, url=settings.database_read_url), self.engine
            )
        self.writer = Writer(
            self.write_engine,
            self.metrics,
            batch_max=settings.batch_max,
            batch_wait=settings.batch_wait_ms / 1000.0,
            queue_max=settings.queue_max,
        )
        # Where items are written: records, then each source's own sinks (by name, for
        # the spool's drainer).
        self.records = RecordsSink(processors)
        self.sinks: dict[str, Sink] = {self.records.name: self.records}
        for source in settings.registry:
            for sink in source.sinks:
                self.add_sink(sink)
        # The local durable spool (DOWNLINK_SPOOL_DIR), used while the database is down.
        self.spool: Spool | None = None
        self.drainer: Drainer | None = None
        if settings.spool_dir:
            self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
            self.drainer = Drainer(
                self.spool,
                lambda name, items: store_items(self.write_engine, self.sink(name), items),
                on_drained=self.metrics.drained.inc,
                on_set_aside=self._on_set_aside,
            )

    def add_sink(self, sink: Sink) -> None:
        """Register a sink (its items may then be spooled and drained)."""
        if sink.name in self.sinks and self.sinks[sink.name] is not sink:
            raise ValueError(f"two sinks are named {sink.name!r}")
        self.sinks[sink.name] = sink

    def sink(self, name: str) -> Sink:
        """The sink registered as ``name`` (raises KeyError for an unknown one)."""
        return self.sinks[name]

    @property
    def processors(self) -> list[BatchProcessor]:
        """The writer processors every new record goes through."""
        return self.records.processors

    def _on_set_aside(self, count: int) -> None:
        self.metrics.set_aside.inc(count)
        self.spool_status()

    def spool_status(self) -> dict[str, int] | None:
        """Records waiting in the spool and set aside there (None without a spool).

        Also refreshes the spool gauges of ``/metrics``.
        """
        if self.spool is None:
            return None
        pending, refused = self.spool.pending(), self.spool.refused_count()
        self.metrics.spool_pending.set(pending)
        self.metrics.spool_refused.set(refused)
        return {"pending": pending, "set_aside": refused}

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite store."""
        return is_sqlite(self.settings.database_url)

    def migrate(self) -> None:
        """Apply pending migrations."""
        migrate.upgrade(self.engine, sources=self.settings.registry)

    def start(self, *, run_migrations: bool = True) -> None:
        """Migrate (by default) and start the writer thread."""
        if run_migrations:
            self.migrate()
        self.writer.start()
        if self.drainer is not None:
            self.spool_status()
            self.drainer.start()

    def close(self) -> None:
        """Commit what is queued, stop the writer and release connections."""
        self.writer.stop()
        if self.drainer is not None and self.spool is not None:
            self.drainer.stop()
            self.spool.close()
        self.write_engine.dispose()
        self.engine.dispose()
        if self.replica is not None:
            self.replica.engine.dispose()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a read transaction on the primary, synchronously."""
        with self.engine.connect() as conn:
            return fn(conn, *args)

    def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, on the read replica if there is one (see :meth:`read`)."""
        if self.replica is None:
            return self.run(fn, *args)
        return self.replica.run(fn, *args)

    def reads_engine(self) -> Engine:
        """The engine for a long read of pages' data (a streamed export): the replica's
        when it may serve this request (:mod:`downlink.store.replica`)."""
        return self.engine if self.replica is None else self.replica.engine_for()

    def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in its own committed write transaction, synchronously.

        For administrative writes (blacklist edits, purges); records go through
        :meth:`write` instead.
        """
        with self.write_engine.begin() as conn:
            return fn(conn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a worker thread and return its result.

        The read of a page, report, export or API answer: on the read replica when
        ``DATABASE_READ_URL`` is set, unless this request must see a write the replica
        has not replayed yet (then on the primary).
        """
        return await to_thread.run_sync(self.run_read, fn, *args)

    async def read_primary(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`read`, always on the primary: the server's own machinery (job and
        consumer runners, quotas) and reads deciding a write."""
        return await to_thread.run_sync(self.run, fn, *args)

    async def admin_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a write transaction, off the event loop.

        On SQLite it runs on the writer thread, in line with the record batches (one
        write lock: see :meth:`Writer.call`); on PostgreSQL in a worker thread. With a
        read replica, a write made while answering a request records the primary's WAL
        position in the request's freshness, so that its later reads (and the next
        page's, through the cookie) see it.
        """
        if self.dialect == "sqlite" and self.writer.running:
            result: T = await self.writer.call(fn, *args)
            return result
        fresh = FRESHNESS.get() if self.replica is not None else None
        if fresh is None:
            return await to_thread.run_sync(self.run_write, fn, *args)
        written, lsn = await to_thread.run_sync(self._write_then_lsn, fn, *args)
        fresh.saw(lsn)
        return written

    def _write_then_lsn(self, fn: Callable[..., T], *args: Any) -> tuple[T, str]:
        with self.write_engine.connect() as conn:
            with conn.begin():
                written = fn(conn, *args)
            lsn = current_lsn(conn)
            conn.rollback()
        return written, lsn

    async def write(self, rows: list[Row] | list[Envelope]) -> list[Envelope]:
        """Store records through the group-commit writer (the records sink).

        With a spool configured, records go to the spool instead while the database is
        unavailable, and while older spooled records still wait (to keep their order);
        :class:`~downlink.store.spool.SpoolFull` (a StoreUnavailable) when it is full.

        Records that cannot be stored, because a text value breaks the rule of
        :mod:`downlink.store.storable` (checked here, the same on every database) or
        because the database refuses them while it takes others, raise
        :class:`RecordsRefused` once the other records are stored.
        """
        items = wrap(rows)
        refused: dict[int, str] = {}
        for index, item in enumerate(items):
            problem = unstorable_field(item.row)
            if problem is not None:
                refused[index] = problem
        if not refused:
            results = await self.write_to(self.records, items)
        else:
            rest = [item for index, item in enumerate(items) if index not in refused]
            stored = iter(await self.write_to(self.records, rest) if rest else [])
            results = [
                item.refusal(refused[index]) if index in refused else next(stored)
                for index, item in enumerate(items)
            ]
        for item in results:
            if item.status == FAILED:
                raise RecordsRefused(results)
        return results

    async def write_to(self, sink: Sink, items: list[Envelope]) -> list[Envelope]:
        """Store ``items`` through ``sink`` with group commit; their outcomes, in order.

        Durable like records: with a spool configured, items go to the spool while the
        database is unavailable or older spooled items wait (``spooled`` set, status
        pending); :class:`~downlink.writer.QueueFull` under overload and
        :class:`StoreUnavailable` on an outage without room in a spool (both: 503 with
        Retry-After). Items the database refuses come back ``failed``, never dropped.
        """
        if sink.name not in self.sinks:
            self.add_sink(sink)
        spool = self.spool
        if spool is not None and spool.active:
            return await self._spool(spool, sink, items)
        try:
            return await self.writer.write(sink, items)
        except StoreUnavailable:
            if spool is None:
                raise
            return await self._spool(spool, sink, items)

    async def _spool(self, spool: Spool, sink: Sink, items: list[Envelope]) -> list[Envelope]:
        stored = await to_thread.run_sync(spool.append, sink.name, items)
        self.metrics.spooled.inc(len(stored))
        return stored
