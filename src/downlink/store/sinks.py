"""Write sinks: how the group-commit writer stores one source's kind of item.

The writer (:mod:`downlink.store.writer`) knows nothing of tables. It takes
:class:`~downlink.store.envelope.Envelope` items addressed to a :class:`Sink`, gathers
what is queued for every sink into one transaction and one commit, and answers each
waiting handler only after the commit; while the database is down the items go to the
local fsynced spool under the sink's name, and the spool's drainer hands them back to
the same sink (:meth:`~downlink.store.database.Store.sink`) once it answers again. So
group commit, the spool, 503 + Retry-After under overload and the SIGKILL guarantee
(an answered item is committed or fsynced) hold for every sink alike.

A sink is three shapes of table write, each returning one envelope per item, in order:

* **append with retransmission dedup** (:class:`RecordsSink`, the ``records`` table):
  ``added``, or ``duplicate`` with the stored record;
* **upsert by key** with ``new`` / ``updated`` (fuel-stats installation structures);
* **batch items with a status each** (fuel-stats action logs: ``added`` / ``existed``;
  OSWL snapshots: ``added`` / ``updated``).

``write`` must be safe to call again on the same items after a rollback (the writer
retries a failing batch in savepoints, halving it down to single items so that one item
the database refuses comes back ``failed`` and the others are stored:
:mod:`downlink.store.refusals`), and must not mind items written before: the spool's
drainer may hand over again items committed just before a crash (appends skip stored
keys, upserts rewrite the same values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from downlink.store.envelope import ADDED, DUPLICATE, Envelope
from downlink.store.inserts import insert_records
from downlink.store.refusals import probe, reset_processors


class Processor(Protocol):
    """A writer processor: ``(conn, rows)`` on a batch's new records, before the insert."""

    def __call__(self, conn: Connection, rows: list[dict[str, Any]]) -> None: ...


class Sink(Protocol):
    """Stores one kind of item in the writer's transaction."""

    @property
    def name(self) -> str:
        """Unique across sources; the spool files items under it."""
        ...

    @property
    def noun(self) -> str:
        """What one item is called in a refusal's message (``record``, ``action log``)."""
        ...

    def write(self, conn: Connection, items: list[Envelope]) -> list[Envelope]:
        """Store ``items`` in ``conn``'s transaction; one outcome per item, in order."""
        ...

    def probe(self, conn: Connection) -> None:
        """Raise unless the database takes writes (run in a savepoint, rolled back)."""
        ...

    def reset(self) -> None:
        """Forget anything cached from a transaction that was rolled back."""
        ...


class BaseSink:
    """Defaults for a source's sink: the records probe, nothing cached."""

    name = ""
    noun = "item"

    def probe(self, conn: Connection) -> None:
        """Does the database take any write? Insert (then roll back) a probe record."""
        probe(conn)

    def reset(self) -> None:
        """Nothing cached."""


class RecordsSink:
    """The ``records`` table: appends skipping retransmissions, then the processors."""

    name = "records"
    noun = "record"

    def __init__(self, processors: Sequence[Processor] = ()) -> None:
        self.processors: list[Processor] = list(processors)

    def write(self, conn: Connection, items: list[Envelope]) -> list[Envelope]:
        """Insert the new records; ``duplicate`` for retransmissions (see inserts)."""
        stored = insert_records(conn, [item.row for item in items], self.processors)
        out: list[Envelope] = []
        for item, row in zip(items, stored, strict=True):
            duplicate = row.pop("duplicate", False)
            out.append(item.outcome(row, DUPLICATE if duplicate else ADDED))
        return out

    def probe(self, conn: Connection) -> None:
        """Insert (then roll back) a probe record through the same processors."""
        probe(conn, self.processors)

    def reset(self) -> None:
        """Have processors forget what they cached from a rolled-back transaction."""
        reset_processors(self.processors)
