"""Where fuel-stats data is written: the source's three write sinks.

The collector hands its items to the core's group-commit writer
(``Store.write_to(sink, items)``), which gathers every queued item of every sink into
one transaction and answers only after the commit, spools items while the database is
down and answers 503 with Retry-After under overload (``downlink.store.sinks``):

* :data:`STRUCTURES` upserts installation structures by ``master_node_uid``: ``new``
  or ``updated``;
* :data:`ACTION_LOGS` inserts action logs never overwriting one: ``added`` or
  ``existed``;
* :data:`OSWLS` upserts OSWL snapshots by (master node, id, resource type): ``added``
  or ``updated``.

An item the database refuses comes back ``failed`` (the writer isolates it in
savepoints). Every ``write`` may run again on the same items (after a rollback, or
when the spool is drained again after a crash) without changing the outcome for the
data. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from downlink.sources.fuelstats import counts, pg_copy
from downlink.sources.fuelstats.shape import rows_of
from downlink.sources.fuelstats.tables import (
    action_logs,
    clusters,
    installations,
    nodes,
    oswl_stats,
)
from downlink.store.envelope import ADDED, EXISTED, NEW, UPDATED, Envelope
from downlink.store.sinks import BaseSink, Sink

CHUNK = 1000


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT clauses on both databases."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@dataclass(frozen=True)
class StructureRow:
    """An installation structure ready to store."""

    master_node_uid: str
    structure: dict[str, Any]
    release: str | None
    is_filtered: bool


def upsert_structure(conn: Connection, row: StructureRow, now: float) -> bool:
    """Store the structure of a master node; True when the node was new.

    The whole document is replaced; ``creation_date`` is set once and
    ``modification_date`` on every later post. The dashboard's counts
    (:mod:`~downlink.sources.fuelstats.counts`) lose the installation's old
    contribution and gain the new one in the same transaction (unless a recount has
    yet to reach the installation: ``counts.lock``'s scope).
    """
    scope = counts.lock(conn)  # taken already by the sink: no statement
    clusters_num = row.structure.get("clusters_num")
    values = {
        "structure": row.structure,
        "release": row.release,
        "is_filtered": row.is_filtered,
        "clusters_num": clusters_num if isinstance(clusters_num, int) else 0,
    }
    delta: counts.Delta = {}
    inserted = conn.execute(
        dialect_insert(conn, installations)
        .values(master_node_uid=row.master_node_uid, creation_date=now, **values)
        .on_conflict_do_nothing(index_elements=["master_node_uid"])
        .returning(installations.c.id)
    ).first()
    if inserted is not None:
        installation_id = int(inserted[0])
        with_logs = True  # its action logs may have come first
    else:
        query = select(installations).where(installations.c.master_node_uid == row.master_node_uid)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # the old state stays the old state
        old = conn.execute(query).mappings().one()
        installation_id = int(old["id"])
        with_logs = (old["release"], bool(old["is_filtered"])) != (row.release, row.is_filtered)
        counts.installation_delta(conn, delta, old, sign=-1, with_logs=with_logs,
                                  scope=scope)
        conn.execute(
            update(installations)
            .where(installations.c.id == installation_id)
            .values(modification_date=now, **values)
        )
        conn.execute(clusters.delete().where(clusters.c.installation_id == installation_id))
        conn.execute(nodes.delete().where(nodes.c.installation_id == installation_id))
    cluster_rows, node_rows = rows_of(row.structure)
    if cluster_rows:
        conn.execute(
            clusters.insert(), [{**r, "installation_id": installation_id} for r in cluster_rows]
        )
    if node_rows:
        conn.execute(nodes.insert(), [{**r, "installation_id": installation_id} for r in node_rows])
    new = conn.execute(
        select(installations).where(installations.c.id == installation_id)).mappings().one()
    counts.installation_delta(conn, delta, new, sign=1, with_logs=with_logs, scope=scope,
                              cluster_rows=cluster_rows, node_rows=node_rows)
    counts.apply(conn, delta)
    return inserted is not None


def insert_action_logs(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[tuple[str, int]]:
    """Insert the action logs whose key is not stored yet; return the keys inserted.

    ``rows`` have distinct (master_node_uid, external_id) keys. Stored rows are never
    overwritten: a key stored meanwhile by another process is simply not inserted.
    """
    if not rows:
        return set()
    scope = counts.lock(conn)  # taken already by the sink: no statement
    found: Sequence[tuple[Any, Any]]
    if conn.dialect.name == "postgresql":
        found = pg_copy.insert_new(conn, rows)  # COPY, then one set-based insert
    else:
        # One statement executed with many parameter sets: SQLAlchemy caches its
        # compiled form and sends the rows in multi-row batches ("insertmanyvalues"); a
        # statement built with .values(rows) was compiled anew for every chunk.
        found = conn.execute(
            dialect_insert(conn, action_logs)
            .on_conflict_do_nothing(index_elements=["master_node_uid", "external_id"])
            .returning(action_logs.c.master_node_uid, action_logs.c.external_id),
            list(rows),
        ).all()
    keys = {(str(uid), int(ext)) for uid, ext in found}
    counts.apply(conn, counts.new_logs_delta(
        conn, [r for r in rows if (r["master_node_uid"], int(r["external_id"])) in keys], scope))
    return keys


OswlKey = tuple[str, int, str]


def upsert_oswls(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[OswlKey]:
    """Insert or overwrite OSWL rows by (master node, id, resource type).

    ``rows`` have distinct keys. Returns the keys that already existed (updated).
    """
    if not rows:
        return set()
    keys = [(r["master_node_uid"], r["external_id"], r["resource_type"]) for r in rows]
    key_cols = (oswl_stats.c.master_node_uid, oswl_stats.c.external_id, oswl_stats.c.resource_type)
    existed = {
        (str(u), int(e), str(t))
        for u, e, t in conn.execute(select(*key_cols).where(tuple_(*key_cols).in_(keys))).all()
    }
    stmt = dialect_insert(conn, oswl_stats)
    changing = (
        "cluster_id",
        "created_date",
        "updated_time",
        "resource_data",
        "resource_checksum",
        "version_info",
        "ts_reception",
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["master_node_uid", "external_id", "resource_type"],
            set_={name: stmt.excluded[name] for name in changing},
        ),
        list(rows),
    )
    return existed


def structure_item(row: StructureRow, received: float) -> Envelope:
    """The envelope of one structure for :data:`STRUCTURES` (JSON-safe, for the spool)."""
    return Envelope({"master_node_uid": row.master_node_uid, "structure": row.structure,
                     "release": row.release, "is_filtered": row.is_filtered,
                     "received": received})


class StructureSink(BaseSink):
    """Installation structures: upsert by master node, ``new`` or ``updated``."""

    name = "fuelstats.installation_structures"
    noun = "installation structure"

    def write(self, conn: Connection, items: list[Envelope]) -> list[Envelope]:
        """Upsert each structure in turn (a node sent twice in a batch: new, updated)."""
        counts.lock(conn)  # first: see counts.py
        out = []
        for item in items:
            row = item.row
            created = upsert_structure(conn, StructureRow(
                row["master_node_uid"], row["structure"], row["release"],
                bool(row["is_filtered"])), float(row["received"]))
            out.append(item.outcome(row, NEW if created else UPDATED))
        return out


class ActionLogSink(BaseSink):
    """Action logs: inserted once, never overwritten; ``added`` or ``existed``."""

    name = "fuelstats.action_logs"
    noun = "action log"

    def write(self, conn: Connection, items: list[Envelope]) -> list[Envelope]:
        """Insert in statements of :data:`CHUNK`; a key seen before is ``existed``."""
        counts.lock(conn)  # first: see counts.py
        first: dict[tuple[str, int], int] = {}
        for index, item in enumerate(items):
            first.setdefault((item.row["master_node_uid"], int(item.row["external_id"])), index)
        fresh = sorted(first.values())
        inserted: set[tuple[str, int]] = set()
        for start in range(0, len(fresh), CHUNK):
            part = [items[i].row for i in fresh[start : start + CHUNK]]
            inserted |= insert_action_logs(conn, part)
        out = []
        for index, item in enumerate(items):
            key = (item.row["master_node_uid"], int(item.row["external_id"]))
            added = first[key] == index and key in inserted
            out.append(item.outcome(item.row, ADDED if added else EXISTED))
        return out


class OswlSink(BaseSink):
    """OSWL snapshots: upsert by (master node, id, resource type); ``added``/``updated``."""

    name = "fuelstats.oswl_stats"
    noun = "OSWL snapshot"

    def write(self, conn: Connection, items: list[Envelope]) -> list[Envelope]:
        """Upsert in rounds of distinct keys (the n-th occurrence of a key in round n:
        one statement may not change a row twice), in statements of :data:`CHUNK`."""
        rounds: list[list[int]] = []
        seen: dict[OswlKey, int] = {}
        for index, item in enumerate(items):
            key = _oswl_key(item.row)
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(index)
        status: dict[int, str] = {}
        for indexes in rounds:
            for start in range(0, len(indexes), CHUNK):
                part = indexes[start : start + CHUNK]
                existed = upsert_oswls(conn, [items[i].row for i in part])
                for i in part:
                    status[i] = UPDATED if _oswl_key(items[i].row) in existed else ADDED
        return [item.outcome(item.row, status[i]) for i, item in enumerate(items)]


def _oswl_key(row: dict[str, Any]) -> OswlKey:
    return (row["master_node_uid"], int(row["external_id"]), row["resource_type"])


STRUCTURES = StructureSink()
ACTION_LOGS = ActionLogSink()
OSWLS = OswlSink()
SINKS: tuple[Sink, ...] = (STRUCTURES, ACTION_LOGS, OSWLS)
