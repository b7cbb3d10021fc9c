"""substrate's node connections leave the insert transaction: node_disconnects, consumer

From this revision on the ``substrate_connections`` consumer keeps
``node_connections`` after the ack (``downlink.sources.substrate.connections``), and
a connection's close is stored in ``node_disconnects`` (primary data: reprocessing
rebuilds ``node_connections.disconnected_at`` from it). The closes already recorded
are copied there. Every record stored before this revision was counted by the
writer's processor, so the consumer starts after the last of them (its cursor is the
last record in commit order: nothing writes while migrations run). Down again, the
cursor row and the table go.

Revision ID: substrate_0001
Revises:
Depends on: 0002_substrate (node_connections), 0009_consumers (the cursors)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "substrate_0001"
down_revision = None
branch_labels = ("substrate",)
depends_on = ("0002_substrate", "0009_consumers")

NAME = "substrate_connections"


def upgrade() -> None:
    op.create_table(
        "node_disconnects",
        sa.Column("connection", sa.String(length=32), nullable=False),
        sa.Column("audit", sa.Boolean(), nullable=False),
        sa.Column("disconnected_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("connection", name=op.f("pk_node_disconnects")),
    )
    op.create_index(
        op.f("ix_node_disconnects_disconnected_at"), "node_disconnects", ["disconnected_at"]
    )
    bind = op.get_bind()
    bind.exec_driver_sql(
        "INSERT INTO node_disconnects (connection, audit, disconnected_at) "
        "SELECT connection, MAX(CASE WHEN audit THEN 1 ELSE 0 END) = 1, MAX(disconnected_at) "
        "FROM node_connections WHERE disconnected_at IS NOT NULL GROUP BY connection"
    )
    if bind.dialect.name == "postgresql":
        last = bind.exec_driver_sql(
            "SELECT CAST(CAST(COALESCE(txid, '0'::xid8) AS text) AS bigint), id FROM records "
            "ORDER BY COALESCE(txid, '0'::xid8) DESC, id DESC LIMIT 1"
        ).first()
    else:
        last = bind.exec_driver_sql("SELECT 0, id FROM records ORDER BY id DESC LIMIT 1").first()
    txid, last_id = (int(last[0]), int(last[1])) if last else (0, 0)
    consumers = sa.table(
        "consumers",
        sa.column("name"),
        sa.column("follows"),
        sa.column("txid"),
        sa.column("last_id"),
        sa.column("handled"),
        sa.column("failures"),
    )
    bind.execute(consumers.delete().where(consumers.c.name == NAME))
    bind.execute(
        consumers.insert().values(
            name=NAME, follows="records", txid=txid, last_id=last_id, handled=0, failures=0
        )
    )


def downgrade() -> None:
    consumers = sa.table("consumers", sa.column("name"))
    op.get_bind().execute(consumers.delete().where(consumers.c.name == NAME))
    op.drop_index(op.f("ix_node_disconnects_disconnected_at"), table_name="node_disconnects")
    op.drop_table("node_disconnects")
