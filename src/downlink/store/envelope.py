"""The typed envelope every item travels in, from a handler through a sink and back.

An item is one row of the sink's table (``row``: column name to value, nothing else)
plus what is known about it beside the row. Before this envelope, a record was a
``dict`` with side-channel keys that no column had (``_node``, ``duplicate``,
``refused``, ``refused_error``, ``spooled``); each is a field here, typed and named
(``_node`` is gone: what it carried is in the record's own ``attrs`` now).

A sink (:mod:`downlink.store.sinks`) takes envelopes with ``status`` :data:`PENDING`
and returns one envelope per input, in order, with the ``row`` as stored and one of:

* :data:`ADDED`: appended (a record, an action log, an OSWL snapshot new to the table);
* :data:`DUPLICATE`: a retransmission of a stored record (``row`` is the stored one);
* :data:`NEW` / :data:`UPDATED`: an upsert by key that created / replaced a row;
* :data:`EXISTED`: an item whose key is stored already and is never overwritten;
* :data:`FAILED`: refused by the store while it takes others; ``refused`` says why
  (for the sender), ``error`` is the database's error (for logs and operators).

``spooled`` is set when the database was down and the item went to the local fsynced
spool instead (:mod:`downlink.store.spool`); its final status is decided when drained.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

Row = dict[str, Any]

PENDING: Final = "pending"
ADDED: Final = "added"
DUPLICATE: Final = "duplicate"
NEW: Final = "new"
UPDATED: Final = "updated"
EXISTED: Final = "existed"
FAILED: Final = "failed"


@dataclass(slots=True)
class Envelope:
    """One item of a write: the row of its table and what is known about it."""

    row: Row
    status: str = PENDING
    spooled: bool = False
    refused: str | None = None
    error: str | None = None

    @property
    def id(self) -> int | None:
        """The row's ``id`` once stored (None when pending, spooled or refused)."""
        value = self.row.get("id")
        return None if value is None else int(value)

    @property
    def duplicate(self) -> bool:
        """True for a retransmission answered with the stored record."""
        return self.status == DUPLICATE

    @property
    def failed(self) -> bool:
        """True when the store refused this item."""
        return self.status == FAILED

    def outcome(self, row: Row, status: str) -> Envelope:
        """This item stored as ``row`` with ``status``."""
        # Not dataclasses.replace: about 1 us an item, on every record of every batch.
        return Envelope(row, status, self.spooled, self.refused, self.error)

    def refusal(self, message: str, error: str | None = None) -> Envelope:
        """This item refused: ``message`` for the sender, ``error`` for operators."""
        return replace(self, row={**self.row, "id": None}, status=FAILED,
                       refused=message, error=error)


def wrap(items: list[Row] | list[Envelope]) -> list[Envelope]:
    """Envelopes for ``items`` (rows are wrapped, envelopes kept)."""
    return [item if isinstance(item, Envelope) else Envelope(item) for item in items]
