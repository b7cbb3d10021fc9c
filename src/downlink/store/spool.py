"""The local durable spool: records accepted while the database is unavailable.

When the group-commit writer fails a batch with :class:`StoreUnavailable` (database
down, locked, out of space), :class:`~downlink.store.database.Store` appends the rows
to this spool instead and the collector still answers success: the rows are in a local
SQLite file, committed with ``synchronous=FULL`` (fsynced) before the answer is sent.

* **Bounded.** ``DOWNLINK_SPOOL_MAX_BYTES`` caps the serialised size of the rows it
  holds; an append that would pass it raises :class:`SpoolFull` (the collector: 503).
* **In order.** While anything is spooled, new records of this process go to the spool
  as well, behind the older ones, and :class:`Drainer` moves them to the database
  oldest first (by the spool's sequence number).
* **No poison pills.** A spooled row the database refuses while it takes records
  (whatever the driver's exception: :mod:`downlink.store.refusals` decides by a probe,
  not by type), or one that breaks the text rule of :mod:`downlink.store.storable`, is
  *set aside*: it moves to the spool file's ``refused`` table with the error, and the
  rows behind it continue. Set-aside rows are counted (``/metrics``, ``/-/health``)
  and an operator lists, exports, retries or drops them with ``downlink spool``.
* **No duplicates.** Every spooled record carries a ``dedup_key`` (rows without one get
  a random key), and the drainer deletes rows from the spool only after the database
  committed them. If the process dies between the two, the next drain inserts nothing
  twice because the store skips keys it already has.
* **Every sink.** An item is spooled with the name of its sink
  (:mod:`downlink.store.sinks`) and drained through the same sink, consecutive items of
  one sink in one transaction: a source's upserts and per-item batches are as durable
  as records. (Their sinks are idempotent, so a drain repeated after a crash changes
  nothing.) Rows spooled before sinks existed are records.

Several server processes may share one spool directory: SQLite serialises appends, and
a ``flock`` on ``drain.lock`` lets one drainer run at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from downlink.store.envelope import Envelope
from downlink.store.storable import unstorable_field
from downlink.store.writer import StoreUnavailable

log = logging.getLogger(__name__)

Row = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    row BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    row BLOB NOT NULL,
    error TEXT NOT NULL
);
"""


RECORDS = "records"


class SpoolFull(StoreUnavailable):
    """The database is unavailable and the spool has no room left."""


@dataclass(frozen=True)
class Spooled:
    """An item in the spool: its sequence number, its sink's name and the item; for a
    set-aside one, the error that set it aside."""

    seq: int
    sink: str
    item: Envelope
    error: str = ""

    @property
    def row(self) -> Row:
        """The item's row."""
        return self.item.row


def _dump(sink: str, item: Envelope) -> bytes:
    if sink == RECORDS:
        return orjson.dumps(item.row)  # the format of every spool before sinks
    return orjson.dumps({"sink": sink, "row": item.row})


def _load(seq: int, blob: bytes, error: str = "") -> Spooled:
    found = orjson.loads(blob)
    if "sink" in found and isinstance(found.get("row"), dict):
        # An older spool may carry a record's "node" beside it: no longer used.
        return Spooled(seq, str(found["sink"]), Envelope(found["row"]), error)
    return Spooled(seq, RECORDS, Envelope(found), error)  # a records row has no "sink"


class Spool:
    """An append-only queue of rows in a local, fsynced SQLite file."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "spool.db"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self.active = self.pending() > 0
        # True from an append refused for want of room until rows leave the spool: the
        # collector is answering 503, and /-/health says so.
        self.refusing = False

    def close(self) -> None:
        """Close the spool file."""
        with self._lock:
            self._conn.close()

    def pending(self) -> int:
        """Rows waiting in the spool."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM spool").fetchone()[0])

    def size(self) -> int:
        """Serialised bytes of the rows waiting in the spool."""
        with self._lock:
            return int(self._conn.execute("SELECT total(size) FROM spool").fetchone()[0])

    def append(self, sink: str, items: list[Envelope]) -> list[Envelope]:
        """Store ``items`` of ``sink`` durably; return them spooled (``id`` None)."""
        keyed = [
            Envelope({**item.row, "dedup_key": secrets.token_hex(32)})
            if sink == RECORDS and not item.row.get("dedup_key") else item
            for item in items
        ]
        blobs = [_dump(sink, item) for item in keyed]
        added = sum(len(b) for b in blobs)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                held = int(conn.execute("SELECT total(size) FROM spool").fetchone()[0])
                if held + added > self.max_bytes:
                    self.refusing = True
                    raise SpoolFull(
                        f"the database is unavailable and the spool holds {held} of "
                        f"{self.max_bytes} bytes"
                    )
                conn.executemany(
                    "INSERT INTO spool (size, row) VALUES (?, ?)", [(len(b), b) for b in blobs]
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self.active = True
            self.refusing = False
        return [Envelope({**item.row, "id": None}, spooled=True) for item in keyed]

    def head(self, limit: int) -> list[Spooled]:
        """The oldest ``limit`` items."""
        with self._lock:
            found = self._conn.execute(
                "SELECT seq, row FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [_load(int(seq), blob) for seq, blob in found]

    def settle(self, through: int, set_aside: list[Spooled]) -> None:
        """After a commit: move ``set_aside`` rows to ``refused``, delete the rest up to
        and including ``through``, in one spool transaction."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO refused (seq, row, error) VALUES (?, ?, ?)",
                    [(e.seq, _dump(e.sink, e.item), e.error) for e in set_aside],
                )
                conn.execute("DELETE FROM spool WHERE seq <= ?", (through,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self.refusing = False
            if conn.execute("SELECT 1 FROM spool LIMIT 1").fetchone() is None:
                self.active = False

    def refused(self, seqs: Iterable[int] | None = None) -> list[Spooled]:
        """Items set aside because the database refused them, with the error.

        All of them, or those whose ids (their spool sequence numbers) are in ``seqs``.
        """
        with self._lock:
            found = self._conn.execute("SELECT seq, row, error FROM refused ORDER BY seq")
            rows = [_load(int(q), r, str(e)) for q, r, e in found.fetchall()]
        if seqs is None:
            return rows
        wanted = set(seqs)
        return [entry for entry in rows if entry.seq in wanted]

    def refused_count(self) -> int:
        """How many rows are set aside."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM refused").fetchone()[0])

    def update_refused(self, seq: int, error: str) -> None:
        """Record the error of a set-aside row's latest retry."""
        with self._lock:
            self._conn.execute("UPDATE refused SET error = ? WHERE seq = ?", (error, seq))

    def drop_refused(self, seqs: Iterable[int]) -> int:
        """Delete set-aside rows (stored by a retry, or given up by an operator)."""
        with self._lock:
            cur = self._conn.executemany(
                "DELETE FROM refused WHERE seq = ?", [(seq,) for seq in seqs]
            )
            return int(cur.rowcount)

    def mark_idle_if_empty(self) -> None:
        """Clear ``active`` when another process drained the spool."""
        with self._lock:
            if self._conn.execute("SELECT 1 FROM spool LIMIT 1").fetchone() is None:
                self.active = False


class Drainer:
    """A thread moving spooled rows into the database once it is back."""

    def __init__(
        self,
        spool: Spool,
        commit: Callable[[str, list[Envelope]], list[Envelope]],
        *,
        chunk: int = 500,
        interval: float = 0.5,
        on_drained: Callable[[int], None] | None = None,
        on_set_aside: Callable[[int], None] | None = None,
    ) -> None:
        """``commit(sink, items)`` stores items through the sink named ``sink`` and
        returns their outcomes, refused ones ``failed``
        (:func:`downlink.store.refusals.store_items`); it raises when the database is
        away."""
        self.spool = spool
        self.commit = commit
        self.chunk = chunk
        self.interval = interval
        self.on_drained = on_drained
        self.on_set_aside = on_set_aside
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start draining in the background."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="downlink-spool", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (rows left in the spool wait for the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain()
            except Exception as exc:  # noqa: BLE001 - the database is still away; retry later
                log.info("spool drain postponed: %s", exc)

    def drain(self) -> int:
        """Move spooled rows to the database, oldest first; return how many moved.

        Raises (leaving the rows for the next attempt) when the database is away.
        """
        if not self.spool.active:
            return 0
        moved = 0
        with open(self.spool.directory / "drain.lock", "a+b") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is draining this spool
            try:
                while not self._stop.is_set():
                    batch = self.spool.head(self.chunk)
                    if not batch:
                        self.spool.mark_idle_if_empty()
                        break
                    moved += self._move(batch)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        if moved:
            log.info("moved %d spooled records into the database (pid %d)", moved, os.getpid())
        return moved

    def _move(self, batch: list[Spooled]) -> int:
        """Commit one chunk, a transaction per run of one sink's items; set aside the
        items that cannot be stored; return how many moved."""
        stored = 0
        start = 0
        while start < len(batch):
            end = start
            while end < len(batch) and batch[end].sink == batch[start].sink:
                end += 1
            stored += self._move_run(batch[start:end])
            start = end
        return stored

    def _move_run(self, run: list[Spooled]) -> int:
        aside: list[Spooled] = []
        good: list[Spooled] = []
        for entry in run:
            # Spooled by an older version, or by a source that skipped the rule: SQLite
            # would keep it and PostgreSQL refuse it, so neither gets it.
            problem = unstorable_field(entry.row) if entry.sink == RECORDS else None
            if problem is None:
                good.append(entry)
            else:
                aside.append(Spooled(entry.seq, entry.sink, entry.item, problem))
        sink = run[0].sink
        results = self.commit(sink, [entry.item for entry in good]) if good else []
        for entry, result in zip(good, results, strict=True):
            if result.failed:
                aside.append(Spooled(entry.seq, entry.sink, entry.item,
                                     str(result.error or result.refused)))
        for entry in aside:
            log.error("spooled %s item %d cannot be stored, set aside: %s",
                      entry.sink, entry.seq, entry.error)
        self.spool.settle(run[-1].seq, sorted(aside, key=lambda entry: entry.seq))
        moved = len(run) - len(aside)
        if self.on_drained is not None and moved:
            self.on_drained(moved)
        if self.on_set_aside is not None and aside:
            self.on_set_aside(len(aside))
        return moved
