"""The group-commit writer: every record (and every sink's item) reaches the store here.

Request handlers call :meth:`Writer.write` with a sink (:mod:`downlink.store.sinks`)
and its items and await it. One thread owns a write connection; it takes whatever
requests are queued (up to ``batch_max`` items, waiting at most ``batch_wait`` for
more), has each sink write its items in one transaction, commits, and only then
resolves the waiting handlers. A handler therefore answers success only for committed
items, while one commit (one fsync) serves a whole batch, whatever the sinks in it.

When more than ``queue_max`` items are waiting, :meth:`Writer.write` raises
:class:`QueueFull` at once so the caller can answer 503 rather than grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from downlink.metrics import Metrics
from downlink.store.envelope import Envelope
from downlink.store.refusals import insert_isolated, is_outage
from downlink.store.sinks import Sink

log = logging.getLogger(__name__)

Row = dict[str, Any]


class QueueFull(Exception):
    """Too many records are waiting for the writer."""


class StoreUnavailable(Exception):
    """The database refused the batch (down, locked, out of space)."""


class RecordsRefused(Exception):
    """Some records of a write cannot be stored; the others were stored.

    ``results`` has one envelope per record written, in order: stored ones as a write
    returns them, refused ones ``failed`` with ``refused`` set to a message for the
    sender (the field that breaks the text rule, or the class of the database's error).
    """

    def __init__(self, results: list[Envelope]) -> None:
        self.results = results
        reasons = [item.refused for item in results if item.failed]
        super().__init__(f"{len(reasons)} of {len(results)} records refused: {reasons[0]}")


class BatchProcessor(Protocol):
    """A per-record processor run inside the writer's transaction, before the insert."""

    def __call__(self, conn: Connection, rows: list[Row]) -> None: ...


@dataclass
class _Request:
    sink: Sink
    items: list[Envelope]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Envelope]]


@dataclass
class _Call:
    """Another write (an admin action, a job step) queued in line with the records."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_Waiter = _Request | _Call
_Outcome = tuple[_Request, list[Envelope] | Exception]
_STOP = object()


class Writer:
    """A single writer thread doing group commits for the whole process."""

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        batch_max: int = 512,
        batch_wait: float = 0.002,
        queue_max: int = 20000,
        on_commit: Callable[[list[Envelope]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.queue_max = queue_max
        self.on_commit = on_commit
        # SimpleQueue: put() is C code taking no Python-level lock, called once per
        # request on the event loop's thread (queue.Queue cost about 2 us a put).
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Items accepted by write() and not yet committed or failed."""
        return self._waiting

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="downlink-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    async def write(self, sink: Sink, items: list[Envelope]) -> list[Envelope]:
        """Have ``sink`` store ``items``; return their outcomes, in order, once committed.

        Each sink says what became of each item (for records: ``added``, or
        ``duplicate`` with the stored record). An item the database refuses while it
        takes others comes back ``failed`` with ``refused`` set
        (:mod:`downlink.store.refusals`); the other items are stored. An outage raises
        :class:`StoreUnavailable` and stores none of them.
        """
        if not items:
            return []
        with self._lock:
            if self._waiting + len(items) > self.queue_max:
                raise QueueFull(f"{self._waiting} records are waiting for the store")
            self._waiting += len(items)
        self.metrics.queue_depth.set(self._waiting)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Envelope]] = loop.create_future()
        self._queue.put(_Request(sink, items, loop, fut))
        # Not shielded: a caller that is cancelled leaves the items to be committed all
        # the same, and _settle skips a future that is already done.
        return await fut

    @property
    def running(self) -> bool:
        """True while the writer thread is running."""
        return self._thread is not None and self._thread.is_alive()

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in its own transaction on the writer thread.

        In line with the record batches, first come first served: on SQLite, where
        there is one write lock, a job writing chunk after chunk from another
        connection starved the writer (its busy handler kept missing the short gaps
        between chunks; collector posts waited seconds).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Call(fn, args, loop, fut))
        return await asyncio.shield(fut)

    # -- writer thread -------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            if isinstance(first, _Call):
                self._call(first)
                continue
            batch: list[_Request] = [first]
            count = len(first.items)
            call: _Call | None = None
            deadline = time.monotonic() + self.batch_wait
            while count < self.batch_max:
                try:
                    remaining = deadline - time.monotonic()
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if isinstance(item, _Call):
                    call = item
                    break
                batch.append(item)
                count += len(item.items)
            self._commit(batch)
            if call is not None:
                self._call(call)
        # Drain anything still queued so no caller waits forever.
        leftovers: list[_Request] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Call):
                self._call(item)
            elif item is not _STOP:
                leftovers.append(item)
        if leftovers:
            self._commit(leftovers)

    def _call(self, call: _Call) -> None:
        outcome: Any
        try:
            with self.engine.begin() as conn:
                outcome = call.fn(conn, *call.args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
            outcome = exc
        _wake(call.loop, [(call, outcome)])

    def _commit(self, batch: list[_Request]) -> None:
        by_sink: dict[int, tuple[Sink, list[Envelope]]] = {}
        for req in batch:
            by_sink.setdefault(id(req.sink), (req.sink, []))[1].extend(req.items)
        groups = list(by_sink.values())
        count = sum(len(items) for _, items in groups)
        started = time.perf_counter()
        try:
            stored = self._transaction(groups, isolated=False)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, none escapes
            for sink, _ in groups:
                sink.reset()
            if not is_outage(exc):
                # An item the database refuses (or a processor bug) must not fail the
                # others that shared its batch: again, in savepoints, halving the
                # failing parts down to single items. A unique violation (another
                # worker stored the same key between our lookup and our insert) is
                # found as stored this time; items the database refuses come back
                # "failed" once a probe shows that it takes writes
                # (downlink.store.refusals); if it takes none, this raises.
                try:
                    stored = self._transaction(groups, isolated=True)
                except Exception as again:  # noqa: BLE001 - answered as unavailable below
                    exc = again
                else:
                    self._resolve_stored(batch, stored, started)
                    return
            self.metrics.writer_errors.labels(type(exc).__name__).inc()
            log.warning("batch of %d items failed: %s", count, exc, exc_info=exc)
            detail = str(exc.orig) if isinstance(exc, DBAPIError) else repr(exc)
            self._resolve([(req, StoreUnavailable(detail)) for req in batch])
            return
        self._resolve_stored(batch, stored, started)

    def _resolve_stored(
        self, batch: list[_Request], stored: dict[int, list[Envelope]], started: float
    ) -> None:
        every = [item for items in stored.values() for item in items]
        self.metrics.batch_size.observe(len(every))
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        for item in every:
            if item.failed:
                self.metrics.writer_errors.labels("refused").inc()
                log.warning("the database refused a %s item: %s",
                            item.row.get("source", "?"), item.error)
        if self.on_commit is not None:
            self.on_commit([item for item in every if not item.failed])
        outcomes: list[_Outcome] = []
        offsets: dict[int, int] = {}
        for req in batch:
            key = id(req.sink)
            offset = offsets.get(key, 0)
            outcomes.append((req, stored[key][offset : offset + len(req.items)]))
            offsets[key] = offset + len(req.items)
        self._resolve(outcomes)

    def _transaction(
        self, groups: list[tuple[Sink, list[Envelope]]], *, isolated: bool
    ) -> dict[int, list[Envelope]]:
        """Every sink's items in one transaction (isolated: failing items left out)."""
        with self.engine.begin() as conn:
            return {
                id(sink): insert_isolated(conn, sink, items) if isolated
                else sink.write(conn, items)
                for sink, items in groups
            }

    def _resolve(self, outcomes: list[_Outcome]) -> None:
        """Answer the waiting handlers: one wake-up per event loop, not one per request.

        Each ``call_soon_threadsafe`` writes to the loop's wake-up pipe; under load a
        batch serves dozens of requests, and one write per request was the writer
        thread's largest cost after the commit itself.
        """
        with self._lock:
            self._waiting -= sum(len(req.items) for req, _ in outcomes)
            waiting = self._waiting
        self.metrics.queue_depth.set(waiting)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, settled in by_loop.items():
            _wake(loop, settled)


def _wake(loop: asyncio.AbstractEventLoop, outcomes: Sequence[tuple[_Waiter, Any]]) -> None:
    """Have ``loop`` set the futures of ``outcomes`` (one wake-up for all of them)."""
    try:
        loop.call_soon_threadsafe(_settle, outcomes)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
        pass


def _settle(outcomes: Sequence[tuple[_Waiter, Any]]) -> None:
    """Set each waiter's future (on its event loop's thread); an exception is raised."""
    for req, outcome in outcomes:
        if req.future.done():
            continue
        if isinstance(outcome, Exception):
            req.future.set_exception(outcome)
        else:
            req.future.set_result(outcome)
