"""Clear Linux's derived data, maintained after the ack by two consumers of ``records``.

A 201 from the collector means the raw record is committed, nothing more. Each
consumer follows ``records`` in commit order (``downlink.pipeline.consumers``) and
applies the Clear Linux records of a batch in the transaction that moves its cursor,
so each record is counted exactly once, whatever process commits it or dies:

* :data:`CRASHES` (``clearlinux_crashes``) finds each crash record's guilty frame
  with the "never guilty" list of the moment, stores it in ``records.guilty_id`` (an
  ``UPDATE`` of the crash records whose group it sets or changes, so ``/api/records``
  answers as before) and adds the crashes to the crash rollups: per day and build,
  per machine, the machine sketches and the all-time machine totals.
* :data:`COUNTS` (``clearlinux_rollups``) adds every record to the daily counts (by
  class, build, platform, severity), the unique machines per day/week/month and the
  MCE rollups.

They are independent (the counts need no guilty frame), so each can be reprocessed
alone: ``reset`` forgets what it derived from a range of days
(:func:`~downlink.sources.clearlinux.rollups.reset_counts`,
:func:`~downlink.sources.clearlinux.rollups.reset_crashes`)
and ``downlink reprocess`` replays the range. A replay of the crash consumer also
regroups the range's crashes with the current "never guilty" list.

The crash consumer also revises in place (``Consumer.revision``): after a "never
guilty" edit, a ``regroup`` job walks the crash records it has applied, batch by batch,
and moves those whose group changes from one group's rollups to the other's in the
transaction that changes their ``guilty_id`` (``_regroup``), so the crash dashboards
are never empty or half rebuilt.

Records of other sources are read past (the cursor moves over them) and never
counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, tuple_, update
from sqlalchemy.sql.elements import ColumnElement

from downlink.sources.base import Consumer, LogRecord, Revision
from downlink.sources.clearlinux.backtrace import BACKTRACE_CLASSES, find_guilty
from downlink.sources.clearlinux.crashes import guilty_ids, load_blacklist
from downlink.sources.clearlinux.rollups import (
    DAY,
    move_crashes,
    reset_counts,
    reset_crashes,
    update_counts,
    update_crashes,
)
from downlink.sources.clearlinux.tables import guilty
from downlink.sources.clearlinux.wire import SOURCE
from downlink.store import cursors, follow
from downlink.store.tables import records

CRASHES_NAME = "clearlinux_crashes"
COUNTS_NAME = "clearlinux_rollups"
_CLASSES = frozenset(BACKTRACE_CLASSES)

Row = dict[str, Any]


def _ours(batch: Sequence[LogRecord]) -> list[Mapping[str, Any]]:
    return [r.row for r in batch if r.row["source"] == SOURCE]


def assign_groups(conn: Connection, rows: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """Set ``guilty_id`` on the crash records among ``rows`` (in the rows only, with
    the current "never guilty" list); return the crash records and those of them whose
    group changed."""
    crashes = [r for r in rows if r.get("classification") in _CLASSES]
    if not crashes:
        return [], []
    blacklist = load_blacklist(conn)
    frames = [find_guilty(row.get("payload") or "", blacklist) for row in crashes]
    # Looked up together; rows made here exist only if this commits.
    ids = guilty_ids(conn, (f for f in frames if f is not None))
    changed: list[Row] = []
    for row, found in zip(crashes, frames, strict=True):
        new = None if found is None else ids[found]
        if new != row.get("guilty_id"):
            changed.append(row)
        row["guilty_id"] = new
    return crashes, changed


def group_crashes(conn: Connection, rows: list[Row]) -> list[Row]:
    """Set ``guilty_id`` on the crash records among ``rows`` (stored records: in the
    rows and in ``records``); return the crash records."""
    return group_crashes_changed(conn, rows)[0]


def group_crashes_changed(conn: Connection, rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """:func:`group_crashes`, returning the crash records and those whose group changed."""
    crashes, changed = assign_groups(conn, rows)
    if changed:
        # In id order, as the regroup job updates: two writers of the same rows take
        # their locks in one order (no deadlock on PostgreSQL).
        changes = sorted(({"rid": int(r["id"]), "gid": r["guilty_id"]} for r in changed),
                         key=lambda c: int(c["rid"]))
        conn.execute(
            update(records)
            .where(records.c.id == bindparam("rid"))
            .values(guilty_id=bindparam("gid")),
            changes,
        )
    return crashes, changed


def _handle_crashes(conn: Connection, batch: Sequence[LogRecord]) -> None:
    crashes = [dict(r.row) for r in batch
               if r.row["classification"] in _CLASSES and r.row["source"] == SOURCE]
    update_crashes(conn, group_crashes(conn, crashes))


def _regroup(conn: Connection, batch: Sequence[LogRecord]) -> int:
    """Regroup crash records the consumer applied, with today's "never guilty" list.

    The records whose group changes get their new ``guilty_id`` and move from the old
    group's rollups to the new one's (:func:`~downlink.sources.clearlinux.rollups.
    move_crashes`), in this one transaction; returns how many moved.
    """
    rows = [dict(r.row) for r in batch
            if r.row["classification"] in _CLASSES and r.row["source"] == SOURCE]
    before = {int(r["id"]): r.get("guilty_id") for r in rows}
    _crashes, changed = group_crashes_changed(conn, rows)
    if changed:
        moved = [(r, before[int(r["id"])]) for r in changed]
        move_crashes(conn, moved, handled(conn, CRASHES_NAME))
    return len(changed)


def _backtraces(table: Table) -> ColumnElement[bool]:
    return table.c.classification.in_(BACKTRACE_CLASSES)


def _in_groups_of(conn: Connection, table: Table, frames: Sequence[Any]) -> ColumnElement[bool]:
    """The crashes now grouped under one of ``frames`` (``[function, module]`` pairs).

    Marking frames never guilty moves only those: ``find_guilty`` returns the first
    frame that is neither listed nor unknown, so listing more frames changes its answer
    only where that answer was one of them (its fallbacks, an unknown frame or the last
    frame of an all-listed stack, stay as they were). Resolved at each step, under the
    consumer's cursor row, so a group a consumer batch created meanwhile is included.
    """
    pairs = [(str(f), str(m)) for f, m in frames]
    ids = [int(i) for i in conn.execute(
        select(guilty.c.id).where(tuple_(guilty.c.function, guilty.c.module).in_(pairs))
    ).scalars()] if pairs else []
    return table.c.guilty_id.in_(ids)


def _handle_counts(conn: Connection, batch: Sequence[LogRecord]) -> None:
    update_counts(conn, _ours(batch))


def _days(since: float, until: float) -> tuple[int, int]:
    """The UTC days ``[first, end)`` of ``[since, until)``, which must be midnights."""
    if since % DAY or until % DAY:
        raise ValueError("Clear Linux rollups are reset by whole UTC days (midnights)")
    return int(since // DAY), int(until // DAY)


def handled(conn: Connection, name: str) -> ColumnElement[bool]:
    """The Clear Linux records the consumer ``name`` has applied (up to its cursor)."""
    cursor = cursors.read(conn, name) or follow.START
    return follow.up_to(conn, records, cursor) & (records.c.source == SOURCE)


def _reset_crashes(conn: Connection, since: float, until: float) -> None:
    reset_crashes(conn, *_days(since, until))


def _reset_counts(conn: Connection, since: float, until: float) -> None:
    reset_counts(conn, *_days(since, until), handled(conn, COUNTS_NAME))


# The regroup after a "never guilty" edit: a revision of the crash consumer's records
# (downlink.pipeline.reprocess), queued by downlink.sources.clearlinux.regroup.
REGROUP_KIND = "regroup"

CRASHES = Consumer(
    name=CRASHES_NAME,
    follows="records",
    handle=_handle_crashes,
    reset=_reset_crashes,
    revision=Revision(
        apply=_regroup, where=_backtraces, kind=REGROUP_KIND, narrow=_in_groups_of
    ),
)
COUNTS = Consumer(
    name=COUNTS_NAME,
    follows="records",
    handle=_handle_counts,
    reset=_reset_counts,
)
CONSUMERS = (CRASHES, COUNTS)
