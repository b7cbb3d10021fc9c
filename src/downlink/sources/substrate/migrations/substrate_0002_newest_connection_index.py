"""Index node connections by (peer id, connection time): each peer's newest connection.

``/nodes`` and the nodes page list the newest connection of every peer id, the one
connected last (``queries._newest_of_each_peer``). Grouping by peer id over an index
of the peer id alone, each group's latest ``connected_at`` was read from the table's
rows; this index holds both, so the grouping reads the index alone. It replaces the
index on ``peer_id``, of which it is an extension (the same look-ups use it).

Revision ID: substrate_0002
Revises: substrate_0001
"""

from __future__ import annotations

from alembic import op

revision = "substrate_0002"
down_revision = "substrate_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_node_connections_peer_id_connected_at", "node_connections",
        ["peer_id", "connected_at"],
    )
    op.drop_index("ix_node_connections_peer_id", table_name="node_connections")
    # Without statistics on the new index SQLite's planner may keep the old plan.
    op.execute("ANALYZE node_connections")


def downgrade() -> None:
    op.create_index("ix_node_connections_peer_id", "node_connections", ["peer_id"])
    op.drop_index("ix_node_connections_peer_id_connected_at", table_name="node_connections")
