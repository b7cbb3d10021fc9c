"""create node_connections and benchmarks (substrate node telemetry)

Revision ID: 0002_substrate
Revises: 0001
Create Date: 2026-11-23 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_substrate"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "node_connections",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=24), nullable=False),
        sa.Column("ip_addr", sa.Text(), nullable=False),
        sa.Column("audit", sa.Boolean(), nullable=False),
        sa.Column("connected_at", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("disconnected_at", sa.Double(), nullable=True),
        sa.Column("messages", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("peer_id", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("chain", sa.Text(), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("implementation", sa.Text(), nullable=True),
        sa.Column("authority", sa.Boolean(), nullable=True),
        sa.Column("startup_time", sa.BigInteger(), nullable=True),
        sa.Column("genesis_hash", sa.Text(), nullable=True),
        sa.Column("info", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_connections")),
        sa.UniqueConstraint("connection", "node", name=op.f("uq_node_connections_connection_node")),
    )
    with op.batch_alter_table("node_connections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_connections_peer_id"), ["peer_id"])
        batch_op.create_index(batch_op.f("ix_node_connections_last_seen"), ["last_seen"])
    op.create_table(
        "benchmarks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("setup", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmarks")),
    )


def downgrade() -> None:
    op.drop_table("benchmarks")
    with op.batch_alter_table("node_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_connections_last_seen"))
        batch_op.drop_index(batch_op.f("ix_node_connections_peer_id"))
    op.drop_table("node_connections")
