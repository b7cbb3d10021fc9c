"""Tell a record the database refuses from a database that is unavailable.

A failed insert means one of two things, and they need opposite answers:

* **An outage** (connection refused or lost, timeout, disk full, lock wait): every
  record fails alike; keep them and try again later (503, or the spool).
* **A refusal**: the database works but will not take *this* record (a value it cannot
  hold, a constraint, a trigger, a processor failing on its content). Retrying it
  forever blocks everything behind it; it must be answered or set aside on its own.

The driver's exception type does not say which reliably: psycopg raises its own classes
from ``COPY`` (``DataError``, ``IntegrityError``, ``ProgrammingError``, …), SQLAlchemy
wraps others, and a read-only standby or a revoked privilege refuses *every* record
with the same types a bad value gets. So only known outage types are trusted as such;
anything else is settled by evidence. :func:`insert_isolated` inserts the rows in
savepoints, halving failing parts down to single items, and when a single item fails
it inserts a harmless probe record (rolled back at once) through the same path: if the
probe goes in, the database demonstrably takes records and the failed rows are
refused; if the probe fails too, it is an outage and the caller keeps every row.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from downlink.store.envelope import Envelope
from downlink.store.inserts import insert_records

if TYPE_CHECKING:
    from downlink.store.sinks import Sink

Row = dict[str, Any]

# Raised when the database is away or unusable as a whole, never because of one record.
_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    OSError,
    TimeoutError,
)


class _Processor(Protocol):
    def __call__(self, conn: Connection, rows: list[Row]) -> None: ...


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable or unusable, not one record."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _OUTAGE_TYPES) or isinstance(
        getattr(exc, "orig", None), _OUTAGE_TYPES
    )


def describe(exc: BaseException) -> str:
    """Return the driver's error class and message (for logs and operators)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".rstrip(": ")


def error_class(message: str) -> str:
    """Return the error class of a :func:`describe` text (what clients are told)."""
    return message.split(":", 1)[0]


def reset_processors(processors: Sequence[object]) -> None:
    """Have processors forget what they cached from a rolled-back transaction."""
    for process in processors:
        reset = getattr(process, "reset", None)
        if callable(reset):
            reset()


def probe_row() -> Row:
    """A minimal record that any working store accepts (inserted, then rolled back)."""
    now = time.time()
    return {
        "source": "probe",
        "record_version": 0,
        "classification": "downlink/probe/insert",
        "severity": 1,
        "machine_id": "",
        "ts_capture": now,
        "ts_reception": now,
        "arch": "",
        "host_type": "",
        "build": "",
        "kernel_version": "",
        "payload_version": 0,
        "system_name": "",
        "board_name": "",
        "cpu_model": "",
        "bios_version": "",
        "event_id": "",
        "external": False,
        "tid": "",
        "payload": "",
        "attrs": None,
        "dedup_key": None,
    }


def probe(conn: Connection, processors: Sequence[_Processor] = ()) -> None:
    """Insert and roll back :func:`probe_row`; raise if the database does not take it."""
    savepoint = conn.begin_nested()
    try:
        insert_records(conn, [probe_row()], processors)
    finally:
        savepoint.rollback()


class _Isolation:
    """One :func:`insert_isolated` run: bisect failing parts down to single items."""

    def __init__(self, conn: Connection, sink: Sink) -> None:
        self.conn = conn
        self.sink = sink
        self.probed = False

    def halves(self, items: list[Envelope]) -> list[Envelope]:
        mid = len(items) // 2
        return self.attempt(items[:mid]) + self.attempt(items[mid:])

    def attempt(self, items: list[Envelope]) -> list[Envelope]:
        """Write ``items`` in a savepoint; if refused, each half on its own."""
        try:
            with self.conn.begin_nested():  # rolled back to here if the part fails
                return self.sink.write(self.conn, items)
        except Exception as exc:
            self.sink.reset()
            if is_outage(exc):
                raise
            if len(items) == 1:
                return [self.refused(items[0], exc)]
        return self.halves(items)

    def refused(self, item: Envelope, exc: Exception) -> Envelope:
        if not self.probed:
            # At the first single item that fails: does the database take any write?
            # If not, this raises and nothing is called refused.
            savepoint = self.conn.begin_nested()
            try:
                self.sink.probe(self.conn)
            finally:
                savepoint.rollback()
                self.sink.reset()
            self.probed = True
        detail = describe(exc)
        return item.refusal(
            f"the store refused this {self.sink.noun} ({error_class(detail)})", detail
        )


def insert_isolated(conn: Connection, sink: Sink, items: list[Envelope]) -> list[Envelope]:
    """Write ``items`` (which failed together) so that only the refused ones are left out.

    Parts are written in savepoints and a failing part is split in halves, down to
    single items: one refused item among n costs about 2 log2(n) attempts, not n.
    Returns one envelope per item, in order: stored, or ``failed`` with ``refused`` (a
    message for the sender) and ``error`` (the database's error). Raises (so the
    caller keeps every item) on an outage, including when an item fails and the probe
    shows that the database takes no write at all.
    """
    isolation = _Isolation(conn, sink)
    return isolation.halves(items) if len(items) > 1 else isolation.attempt(items)


def store_items(engine: Engine, sink: Sink, items: list[Envelope]) -> list[Envelope]:
    """Commit ``items`` in one transaction; if that fails other than by an outage, again
    in savepoints (:func:`insert_isolated`), so that only the refused items are left out.

    Raises on an outage: nothing of ``items`` is then known to be stored.
    """
    try:
        with engine.begin() as conn:
            return sink.write(conn, items)
    except Exception as exc:
        sink.reset()
        if is_outage(exc):
            raise
    with engine.begin() as conn:
        return insert_isolated(conn, sink, items)
