"""Reads on a streaming replica (``DATABASE_READ_URL``) that still see their own writes.

A PostgreSQL streaming replica replays the primary's WAL a little behind it (usually
milliseconds; much longer while a long query on it holds replay back, or while it is
paused). Pages, reports, exports and API reads go there (``Store.read``); everything
that writes, and the server's own machinery (consumers, jobs, purges, quotas), reads the
primary (``Store.read_primary``). What a person must see at once after a write is
handled by the primary's WAL position (an LSN), not by guessing a delay:

* every write made through ``Store.admin_write`` while a request is being answered
  records ``pg_current_wal_lsn()`` of the primary after its commit in the request's
  :class:`Freshness` (this module's context variable, set by
  :class:`downlink.fresh_reads.FreshReads`);
* later reads of the same request (the job status answered by the POST that queued
  the job) and of the requests that carry the position back in the ``downlink_lsn``
  cookie (the page a POST-redirect-GET lands on) read the replica only if it has
  replayed that far (``pg_last_wal_replay_lsn() >= lsn``, asked on the replica
  connection about to be used), else the primary;
* the collector answers from what its writer's ``INSERT … RETURNING``/``COPY`` wrote
  (never a read), so its ``201`` body is never stale.

A replica that cannot be reached is left alone for :data:`RETRY_AFTER_S` seconds and
its reads go to the primary meanwhile (logged once per outage).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

COOKIE = "downlink_lsn"
# How long the cookie asks for fresh reads: a replica further behind than this is a
# fault the lag metric shows, not something to hide from every later page.
COOKIE_MAX_AGE_S = 300
RETRY_AFTER_S = 10.0
_LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")


def parse_lsn(value: str | None) -> str | None:
    """An LSN as PostgreSQL prints it (``16/B374D848``), or None for anything else."""
    if value is None:
        return None
    value = value.strip().upper()
    return value if _LSN.match(value) else None


def lsn_int(lsn: str) -> int:
    """An LSN as one integer, to compare two of them."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Freshness:
    """What one request must see: the primary's WAL position after its writes."""

    need: str | None = None
    wrote: str | None = None

    def saw(self, lsn: str) -> None:
        """This request wrote up to ``lsn``: its later reads must see that much."""
        if self.need is None or lsn_int(lsn) > lsn_int(self.need):
            self.need = lsn
        self.wrote = self.need


FRESHNESS: ContextVar[Freshness | None] = ContextVar("downlink_freshness", default=None)


def current_lsn(conn: Connection) -> str:
    """The primary's WAL write position now (after a commit: at or past that commit)."""
    return str(conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one())


def replayed(conn: Connection, lsn: str) -> bool:
    """True when the replica behind ``conn`` has replayed the WAL up to ``lsn``."""
    done = conn.execute(
        text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"), {"lsn": lsn}
    ).scalar_one()
    return bool(done)


def _replica_trouble(exc: DBAPIError) -> bool:
    """An outage of the replica or a query its replay cancelled, not a bad statement."""
    if getattr(exc.orig, "sqlstate", None) == "40001":
        return True
    return isinstance(exc, OperationalError)


class Replica:
    """The replica's engine, with the fall-back to the primary."""

    def __init__(self, engine: Engine, primary: Engine) -> None:
        self.engine = engine
        self.primary = primary
        self._down_until = 0.0

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(conn, *args)`` on the replica when it may, else on the primary.

        A read the replica cannot finish (it went away, or replay cancelled the query:
        SQLSTATE 40001, "conflict with recovery") is run again on the primary.
        """
        fresh = FRESHNESS.get()
        need = fresh.need if fresh is not None else None
        if time.monotonic() >= self._down_until:
            try:
                with self.engine.connect() as conn:
                    if need is None or replayed(conn, need):
                        return fn(conn, *args)
            except DBAPIError as exc:
                if not _replica_trouble(exc):
                    raise
                if getattr(exc.orig, "sqlstate", None) != "40001":
                    self._down_until = time.monotonic() + RETRY_AFTER_S
                log.warning("read replica failed a read, reading the primary: %s", exc)
        with self.primary.connect() as conn:
            return fn(conn, *args)

    def engine_for(self) -> Engine:
        """The engine a long read (a streamed export) should use now."""
        fresh = FRESHNESS.get()
        if time.monotonic() < self._down_until:
            return self.primary
        if fresh is None or fresh.need is None:
            return self.engine
        try:
            with self.engine.connect() as conn:
                return self.engine if replayed(conn, fresh.need) else self.primary
        except OperationalError:
            self._down_until = time.monotonic() + RETRY_AFTER_S
            return self.primary
