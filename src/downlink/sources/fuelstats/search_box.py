"""What the navigation bar's search box finds among fuel-stats' data: a Fuel master
node by its uid (an exact match on the unique ``master_node_uid`` of the installation
structures)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from downlink.sources.fuelstats.tables import installations


def find(conn: Connection, text: str) -> dict[str, Any]:
    """``fuel_master_node``: ``{master_node_uid, release, environments, last_reported}``
    or None."""
    c = installations.c
    row = conn.execute(
        select(c.master_node_uid, c.release, c.clusters_num,
               func.coalesce(c.modification_date, c.creation_date))
        .where(c.master_node_uid == text)
    ).first()
    if row is None:
        return {"fuel_master_node": None}
    return {
        "fuel_master_node": {
            "master_node_uid": row[0],
            "release": row[1],
            "environments": int(row[2]),
            "last_reported": float(row[3]),
        }
    }
