"""Crash grouping: give every backtrace record its guilty frame, after the ack and on demand.

The crash consumer (``downlink.sources.clearlinux.consumers``) groups each committed
crash record with :func:`find_guilty` and :func:`guilty_id`. When the "never guilty"
list changes, the stored crashes are regrouped chunk by chunk with
:func:`regroup_chunk` (by the server's background job, :mod:`downlink.sources.clearlinux.regroup`,
or all at once by :func:`recompute_guilty`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from downlink.sources.clearlinux.backtrace import BACKTRACE_CLASSES, find_guilty
from downlink.sources.clearlinux.tables import guilty, guilty_blacklist
from downlink.store.tables import records

Row = dict[str, Any]
_CLASSES = frozenset(BACKTRACE_CLASSES)


def load_blacklist(conn: Connection) -> set[tuple[str, str]]:
    """Return the (function, module) pairs that are never guilty."""
    rows = conn.execute(select(guilty_blacklist.c.function, guilty_blacklist.c.module))
    return {(f, m) for f, m in rows}


def _blacklist_version(conn: Connection) -> tuple[int, int]:
    count, top = conn.execute(
        select(func.count(), func.coalesce(func.max(guilty_blacklist.c.id), 0))
    ).one()
    return int(count), int(top)


def guilty_id(conn: Connection, function: str, module: str) -> int:
    """Return the id of a guilty frame, creating the row when it is new.

    Looked up first: on PostgreSQL an ``INSERT … ON CONFLICT DO NOTHING`` of a known
    frame would still take a number from the sequence, so ids would depend on how
    often known frames were met, not only on the order new ones appear.
    """
    where = (guilty.c.function == function, guilty.c.module == module)
    known = conn.execute(select(guilty.c.id).where(*where)).scalar()
    if known is not None:
        return int(known)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(guilty)
        .values(function=function, module=module)
        .on_conflict_do_nothing(index_elements=["function", "module"])
    )
    found = conn.execute(
        select(guilty.c.id).where(guilty.c.function == function, guilty.c.module == module)
    ).scalar_one()
    return int(found)


def guilty_ids(conn: Connection, frames: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Return the ids of guilty frames, creating the new ones in the order given.

    The known ones are read in one statement per 500 functions (a batch's frames
    were read one statement each: most of a regroup step's work); the new ones are
    created one by one with :func:`guilty_id`, in order, so ids depend only on the
    order new frames appear.
    """
    wanted = list(dict.fromkeys(frames))
    found: dict[tuple[str, str], int] = {}
    functions = sorted({f for f, _ in wanted})
    for start in range(0, len(functions), 500):
        part = functions[start : start + 500]
        rows = conn.execute(
            select(guilty.c.function, guilty.c.module, guilty.c.id)
            .where(guilty.c.function.in_(part))
        )
        for function, module, gid in rows:
            found[(str(function), str(module))] = int(gid)
    out: dict[tuple[str, str], int] = {}
    for frame in wanted:
        known = found.get(frame)
        out[frame] = guilty_id(conn, *frame) if known is None else known
    return out


def count_backtraces(conn: Connection) -> int:
    """Return how many stored records are of a backtrace class (what a regroup walks)."""
    found = conn.execute(
        select(func.count()).where(records.c.classification.in_(BACKTRACE_CLASSES))
    ).scalar_one()
    return int(found)


def regroup_chunk(
    conn: Connection,
    after: int,
    limit: int,
    blacklist: set[tuple[str, str]],
    ids: dict[tuple[str, str], int],
) -> tuple[int, int, int]:
    """Regroup up to ``limit`` backtrace records with ids above ``after``.

    Returns ``(last id seen, records seen, records whose group changed)``; fewer than
    ``limit`` records seen means none are left. ``ids`` caches guilty-frame ids and
    gains the ones this call creates: only keep it past a rollback if the caller
    discards those (:mod:`downlink.sources.clearlinux.regroup` copies it per transaction). The
    changed records are updated with one executemany statement.
    """
    rows = conn.execute(
        select(records.c.id, records.c.payload, records.c.guilty_id)
        .where(records.c.classification.in_(BACKTRACE_CLASSES), records.c.id > after)
        .order_by(records.c.id)
        .limit(limit)
    ).all()
    changes: list[dict[str, Any]] = []
    for rid, payload, current in rows:
        found = find_guilty(payload or "", blacklist)
        new: int | None = None
        if found is not None:
            new = ids.get(found)
            if new is None:
                new = ids[found] = guilty_id(conn, *found)
        if new != current:
            changes.append({"rid": rid, "gid": new})
    if changes:
        conn.execute(
            update(records)
            .where(records.c.id == bindparam("rid"))
            .values(guilty_id=bindparam("gid")),
            changes,
        )
    last = int(rows[-1][0]) if rows else after
    return last, len(rows), len(changes)


def recompute_guilty(conn: Connection, chunk: int = 2000) -> int:
    """Regroup every stored backtrace record in this transaction; return how many changed.

    The server regroups in the background instead, one transaction per chunk
    (:mod:`downlink.sources.clearlinux.regroup`); this is for scripts, benchmarks and tests.
    """
    blacklist = load_blacklist(conn)
    ids: dict[tuple[str, str], int] = {}
    changed = 0
    last = 0
    while True:
        last, seen, n = regroup_chunk(conn, last, chunk, blacklist, ids)
        changed += n
        if seen < chunk:
            return changed


def add_to_blacklist(conn: Connection, pairs: Iterable[tuple[str, str]]) -> int:
    """Mark frames as never guilty; return how many were new."""
    existing = load_blacklist(conn)
    new = [{"function": f, "module": m} for f, m in dict.fromkeys(pairs) if (f, m) not in existing]
    if new:
        conn.execute(guilty_blacklist.insert(), new)
    return len(new)


def remove_from_blacklist(conn: Connection, pairs: Iterable[tuple[str, str]]) -> int:
    """Let frames be guilty again; return how many entries were removed."""
    removed = 0
    for function, module in pairs:
        result = conn.execute(
            guilty_blacklist.delete().where(
                guilty_blacklist.c.function == function, guilty_blacklist.c.module == module
            )
        )
        removed += result.rowcount or 0
    return removed
