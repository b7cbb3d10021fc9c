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
savepoints, halving failing parts down to single rows, and when a single row fails it
inserts a harmless probe record (rolled back at once) through the same path: if the
probe goes in, the database demonstrably takes records and the failed rows are
refused; if the probe fails too, it is an outage and the caller keeps every row.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from downlink.store.inserts import insert_records

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
# Set on a row the store did not take: a message for the sender (no database detail)…
REFUSED_KEY = "refused"
# … and, for a refusal by the database, its full error for logs and operators.
ERROR_KEY = "refused_error"


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
    """One :func:`insert_isolated` run: bisect failing parts down to single rows."""

    def __init__(self, conn: Connection, processors: Sequence[_Processor]) -> None:
        self.conn = conn
        self.processors = processors
        self.probed = False

    def halves(self, rows: list[Row]) -> list[Row]:
        mid = len(rows) // 2
        return self.attempt(rows[:mid]) + self.attempt(rows[mid:])

    def attempt(self, rows: list[Row]) -> list[Row]:
        """Insert ``rows`` in a savepoint; if refused, each half on its own."""
        try:
            with self.conn.begin_nested():  # rolled back to here if the part fails
                return insert_records(self.conn, rows, self.processors)
        except Exception as exc:
            reset_processors(self.processors)
            if is_outage(exc):
                raise
            if len(rows) == 1:
                return [self.refused(rows[0], exc)]
        return self.halves(rows)

    def refused(self, row: Row, exc: Exception) -> Row:
        if not self.probed:
            # At the first single row that fails: does the database take any record?
            # If not, this raises and nothing is called refused.
            probe(self.conn, self.processors)
            self.probed = True
        detail = describe(exc)
        return {**row, "id": None, "duplicate": False, ERROR_KEY: detail,
                REFUSED_KEY: f"the store refused this record ({error_class(detail)})"}


def insert_isolated(
    conn: Connection, rows: list[Row], processors: Sequence[_Processor] = ()
) -> list[Row]:
    """Insert ``rows`` (which failed together) so that only the refused ones are left out.

    Parts are inserted in savepoints and a failing part is split in halves, down to
    single rows: one refused row among n costs about 2 log2(n) attempts, not n. Returns
    one row per input row, in order: stored (with ``id``) or, for a refused one, the
    input row with ``id`` None, :data:`REFUSED_KEY` set to a message for the sender and
    :data:`ERROR_KEY` to the database's error. Raises (so the caller keeps every row)
    on an outage, including when a row fails and the probe shows that the database
    takes no record at all.
    """
    isolation = _Isolation(conn, processors)
    return isolation.halves(rows) if len(rows) > 1 else isolation.attempt(rows)


def store_rows(engine: Engine, rows: list[Row], processors: Sequence[_Processor] = ()) -> list[Row]:
    """Commit ``rows`` in one transaction; if that fails other than by an outage, again
    in savepoints (:func:`insert_isolated`), so that only the refused rows are left out.

    Raises on an outage: nothing of ``rows`` is then known to be stored.
    """
    try:
        with engine.begin() as conn:
            return insert_records(conn, rows, processors)
    except Exception as exc:
        reset_processors(processors)
        if is_outage(exc):
            raise
    with engine.begin() as conn:
        return insert_isolated(conn, rows, processors)
