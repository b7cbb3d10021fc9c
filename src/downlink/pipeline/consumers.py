"""Processing after the ack: consumers follow committed rows with a persisted cursor.

A 201 means the raw row is committed, nothing more. Each
:class:`~downlink.sources.base.Consumer` then reads the rows of the table it follows
in commit order (:mod:`downlink.store.follow`) and applies them with
``handle(conn, batch)`` in the same transaction that moves its cursor
(:mod:`downlink.store.cursors`): exactly once, and after a SIGKILL at any point the
batch in flight simply rolls back and is read again.

Every server process runs a :class:`ConsumerRunner` (started by the app's lifespan,
like the job runner), unless ``DOWNLINK_RUN_CONSUMERS=off`` gives that work to
``downlink consume`` (:mod:`downlink.background`). It goes round the consumers: an
idle consumer costs one read (:func:`~downlink.store.follow.has_after`); one with
rows waiting gets a write transaction per batch (``store.admin_write``: on SQLite in
line with the record batches on the writer thread). A consumer whose batch fails
keeps its cursor and waits, 0.5 s doubling up to ``DOWNLINK_CONSUMER_RETRY_MAX_S``,
with its error on ``/consumers``; the others and ingestion go on. Lag (rows and
seconds behind) is refreshed every second into Prometheus gauges.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table

from downlink.pipeline.loop import PollingLoop
from downlink.sources.base import Consumer, LogRecord
from downlink.sources.registry import SourceError, Sources
from downlink.store import cursors, follow
from downlink.store.tables import metadata as core_metadata

log = logging.getLogger(__name__)

LAG_EVERY_S = 1.0
# Options of `downlink reprocess` a consumer's filter may not take as its name.
RESERVED_OPTIONS = frozenset(
    {"source", "since", "until", "consumer", "dry_run", "from_archive", "in_place",
     "database_url", "help"}
)
_FILTER_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Bound:
    """A consumer with the source that brings it and the table it follows."""

    source: str
    consumer: Consumer
    table: Table

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.consumer.name


def bind(sources: Sources, extra: Sequence[tuple[str, Consumer]] = ()) -> list[Bound]:
    """Every source's consumers, each with its followed table; SourceError if missing.

    ``extra`` adds consumers the core builds from settings, as ``(label, consumer)``
    (the analytics shippers, labelled ``analytics`` for ``downlink reprocess``).
    """
    tables: dict[str, Table] = dict(core_metadata.tables)
    for md in sources.metadata():
        tables.update(md.tables)
    bound: list[Bound] = []
    owned = [(source.name, consumer) for source, consumer in sources.consumers]
    for owner, consumer in [*owned, *extra]:
        table = tables.get(consumer.follows)
        if table is None:
            raise SourceError(
                f"consumer {consumer.name!r} of source {owner!r} follows "
                f"{consumer.follows!r}, which is not a table of the core or of a source"
            )
        if "id" not in table.c or consumer.ts_column not in table.c:
            raise SourceError(
                f"consumer {consumer.name!r}: table {table.name!r} needs an `id` column "
                f"and the reception-time column {consumer.ts_column!r}"
            )
        if table.name != "records" and not table.dialect_options["sqlite"]["autoincrement"]:
            raise SourceError(
                f"consumer {consumer.name!r}: table {table.name!r} must be declared with "
                "sqlite_autoincrement=True (SQLite would reuse ids; see downlink.store.follow)"
            )
        for f in consumer.filters:
            if not _FILTER_NAME.fullmatch(f.name) or f.name in RESERVED_OPTIONS:
                raise SourceError(
                    f"consumer {consumer.name!r}: filter name {f.name!r} must be a slug "
                    f"([a-z][a-z0-9_]*) and none of {', '.join(sorted(RESERVED_OPTIONS))}"
                )
        if consumer.filters and consumer.reset is not None and consumer.reset_matching is None:
            raise SourceError(
                f"consumer {consumer.name!r} declares reprocess filters and a reset: it "
                "needs reset_matching too (forgetting only the matching rows' data)"
            )
        if consumer.batch_max < 1:
            raise SourceError(f"consumer {consumer.name!r}: batch_max must be at least 1")
        bound.append(Bound(owner, consumer, table))
    return bound


def records_of(bound: Bound, rows: Iterable[dict[str, Any]]) -> list[LogRecord]:
    """The rows as the consumer sees them."""
    ts = bound.consumer.ts_column
    return [LogRecord(seq=int(r["id"]), ts=float(r[ts]), row=r) for r in rows]


def ensure_all(conn: Connection, bounds: Sequence[Bound]) -> None:
    """Create the cursor rows of consumers seen for the first time."""
    for b in bounds:
        cursors.ensure(conn, b.name, b.consumer.follows)


def step(conn: Connection, bound: Bound) -> int:
    """Handle the consumer's next batch in the caller's transaction; return its size.

    0 when nothing waits, or when another process holds the consumer right now.
    """
    cursor = cursors.lock(conn, bound.name)
    if cursor is None:
        return 0
    found = follow.read_after(conn, bound.table, cursor, bound.consumer.batch_max)
    if not found.rows:
        return 0
    batch = records_of(bound, found.rows)
    bound.consumer.handle(conn, batch)
    cursors.advance(conn, bound.name, found.cursor, len(batch), batch[-1].ts)
    return len(batch)


def has_work(conn: Connection, bound: Bound) -> bool:
    """Whether rows wait after the consumer's cursor (a read)."""
    cursor = cursors.read(conn, bound.name) or follow.START
    return follow.has_after(conn, bound.table, cursor)


def status(
    conn: Connection, bounds: Sequence[Bound], now: float | None = None
) -> list[dict[str, Any]]:
    """Each consumer's state: cursor, counts, lag and last error (JSON-able)."""
    at = time.time() if now is None else now
    by_name = cursors.rows(conn)
    out: list[dict[str, Any]] = []
    for b in bounds:
        row = by_name.get(b.name, {})
        cursor = follow.Cursor(int(row.get("txid") or 0), int(row.get("last_id") or 0))
        behind, first_ts = follow.lag(conn, b.table, b.consumer.ts_column, cursor)
        out.append(
            {
                "name": b.name,
                "source": b.source,
                "follows": b.consumer.follows,
                "cursor": {"txid": cursor.txid, "id": cursor.id},
                "handled": int(row.get("handled") or 0),
                "last_ts": row.get("last_ts"),
                "updated_at": row.get("updated_at"),
                "lag_records": behind,
                "lag_seconds": 0.0 if first_ts is None else max(0.0, at - first_ts),
                "error": row.get("error"),
                "failures": int(row.get("failures") or 0),
                "retry_at": row.get("retry_at"),
            }
        )
    return out


class ConsumerRunner(PollingLoop):
    """Background task of a server process: keeps every consumer caught up.

    A :class:`~downlink.pipeline.loop.PollingLoop`: each round gives every consumer
    due a batch (:meth:`run_once`) and goes on at once while one had a full batch.

    With ``handle=False`` it only watches: every :data:`LAG_EVERY_S` it reads the
    consumers' lag from their cursors (gauges, pages' freshness marks) and handles
    nothing, writes nothing. That is what ``downlink serve`` runs when
    ``DOWNLINK_RUN_CONSUMERS=off`` leaves the consumers to ``downlink consume``.
    """

    name = "consumers"

    def __init__(
        self,
        store: Any,
        bounds: Sequence[Bound],
        *,
        poll_s: float = 0.25,
        retry_max_s: float = 60.0,
        handle: bool = True,
    ) -> None:
        if not handle and poll_s > 0:
            poll_s = LAG_EVERY_S
        super().__init__(poll_s=poll_s, retry_max_s=retry_max_s)
        self.store = store
        self.bounds = list(bounds)
        self.handle = handle
        self._retry_at: dict[str, float] = {}
        # Consumers lingering after a partial batch (Consumer.linger_s), until when.
        self._not_before: dict[str, float] = {}
        self._next_lag = 0.0
        # Each consumer's status as of the last lag refresh (pages' freshness marks).
        self.latest: dict[str, dict[str, Any]] = {}
        self.latest_at: float | None = None

    def enabled(self) -> bool:
        """Polling is on and some source brings a consumer."""
        return bool(self.bounds) and super().enabled()

    async def prepare(self) -> None:
        """Create the cursor rows of consumers seen for the first time (a watcher
        leaves that to the processes that handle them)."""
        if self.handle:
            await self.store.admin_write(ensure_all, self.bounds)

    async def run_once(self) -> bool:
        """Give each consumer due a batch, then refresh the lag (at most every
        :data:`LAG_EVERY_S`); True when one handled a full batch."""
        busy = await self._batches() if self.handle else False
        await self._refresh_lag()
        return busy

    async def _batches(self) -> bool:
        busy = False
        now = time.time()
        for b in self.bounds:
            if self.stopping():
                break
            if self._retry_at.get(b.name, 0.0) > now or self._not_before.get(b.name, 0.0) > now:
                continue
            if not await self.store.read_primary(has_work, b):
                continue
            try:
                n = await self.store.admin_write(step, b)
            except Exception as exc:  # noqa: BLE001 - a failing consumer must not stop others
                await self._failed(b, exc)
                continue
            self._retry_at.pop(b.name, None)
            if n:
                self.store.metrics.consumer_handled.labels(b.name).inc(n)
            busy = busy or n >= b.consumer.batch_max
            if 0 < n < b.consumer.batch_max and b.consumer.linger_s > 0:
                self._not_before[b.name] = time.time() + b.consumer.linger_s
        return busy

    async def _failed(self, b: Bound, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.warning("consumer %s failed: %s", b.name, message)
        self.store.metrics.consumer_failures.labels(b.name).inc()
        try:
            _failures, retry_at = await self.store.admin_write(
                cursors.fail, b.name, message, self.retry_max_s
            )
        except Exception as again:  # noqa: BLE001 - keep a local backoff anyway
            log.warning("consumer %s: could not record the failure: %s", b.name, again)
            retry_at = time.time() + self.retry_max_s
        self._retry_at[b.name] = retry_at

    async def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + LAG_EVERY_S
        metrics = self.store.metrics
        at = time.time()
        entries = await self.store.read_primary(status, self.bounds, at)
        for entry in entries:
            metrics.consumer_lag_records.labels(entry["name"]).set(entry["lag_records"])
            metrics.consumer_lag_seconds.labels(entry["name"]).set(entry["lag_seconds"])
        self.latest = {e["name"]: e for e in entries}
        self.latest_at = at

    def freshness(self, names: Sequence[str]) -> dict[str, Any] | None:
        """How fresh the data derived by the consumers ``names`` is, as of the last lag
        refresh (at most about a second old): records and seconds behind, the worst of
        them, and their errors; None before the first refresh."""
        found = [self.latest[n] for n in names if n in self.latest]
        if not found or self.latest_at is None:
            return None
        return {
            "checked_at": self.latest_at,
            "lag_records": sum(int(e["lag_records"]) for e in found),
            "lag_seconds": max(float(e["lag_seconds"]) for e in found),
            "errors": [f"{e['name']}: {e['error']}" for e in found if e["error"]],
        }
