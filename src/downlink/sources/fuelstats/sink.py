"""Where fuel-stats data is written: one function per kind, each one transaction.

Every function takes the write connection of one committed transaction (the caller
runs it through ``Store.admin_write``, so an answer is only given after the commit)
and returns what the collector reports per item. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from downlink.sources.fuelstats.shape import rows_of
from downlink.sources.fuelstats.tables import (
    action_logs,
    clusters,
    installations,
    nodes,
    oswl_stats,
)

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
    ``modification_date`` on every later post.
    """
    clusters_num = row.structure.get("clusters_num")
    values = {
        "structure": row.structure,
        "release": row.release,
        "is_filtered": row.is_filtered,
        "clusters_num": clusters_num if isinstance(clusters_num, int) else 0,
    }
    inserted = conn.execute(
        dialect_insert(conn, installations)
        .values(master_node_uid=row.master_node_uid, creation_date=now, **values)
        .on_conflict_do_nothing(index_elements=["master_node_uid"])
        .returning(installations.c.id)
    ).first()
    if inserted is not None:
        installation_id = int(inserted[0])
    else:
        installation_id = conn.execute(
            update(installations)
            .where(installations.c.master_node_uid == row.master_node_uid)
            .values(modification_date=now, **values)
            .returning(installations.c.id)
        ).scalar_one()
        conn.execute(clusters.delete().where(clusters.c.installation_id == installation_id))
        conn.execute(nodes.delete().where(nodes.c.installation_id == installation_id))
    cluster_rows, node_rows = rows_of(row.structure)
    if cluster_rows:
        conn.execute(
            clusters.insert(), [{**r, "installation_id": installation_id} for r in cluster_rows]
        )
    if node_rows:
        conn.execute(nodes.insert(), [{**r, "installation_id": installation_id} for r in node_rows])
    return inserted is not None


def insert_action_logs(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[tuple[str, int]]:
    """Insert the action logs whose key is not stored yet; return the keys inserted.

    ``rows`` have distinct (master_node_uid, external_id) keys. Stored rows are never
    overwritten: a key stored meanwhile by another process is simply not inserted.
    """
    if not rows:
        return set()
    found = conn.execute(
        dialect_insert(conn, action_logs)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["master_node_uid", "external_id"])
        .returning(action_logs.c.master_node_uid, action_logs.c.external_id)
    ).all()
    return {(str(uid), int(ext)) for uid, ext in found}


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
    stmt = dialect_insert(conn, oswl_stats).values(list(rows))
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
        )
    )
    return existed
