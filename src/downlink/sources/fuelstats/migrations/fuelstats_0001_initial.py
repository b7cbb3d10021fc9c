"""fuel-stats: installation structures, action logs, OSWL stats, failure outbox

Revision ID: fuelstats_0001
Revises:
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fuelstats_0001"
down_revision = None
branch_labels = ("fuelstats",)
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fuel_installation_structures",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("master_node_uid", sa.Text(), nullable=False),
        sa.Column("structure", sa.JSON(), nullable=False),
        sa.Column("creation_date", sa.Double(), nullable=False),
        sa.Column("modification_date", sa.Double(), nullable=True),
        sa.Column("release", sa.Text(), nullable=True),
        sa.Column("is_filtered", sa.Boolean(), nullable=False),
        sa.Column("clusters_num", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fuel_installation_structures"),
        sa.UniqueConstraint(
            "master_node_uid", name="uq_fuel_installation_structures_master_node_uid"
        ),
    )
    op.create_index(
        "ix_fuel_installation_structures_release", "fuel_installation_structures", ["release"]
    )
    op.create_index(
        "ix_fuel_installation_structures_is_filtered",
        "fuel_installation_structures",
        ["is_filtered"],
    )
    op.create_table(
        "fuel_clusters",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("nodes_num", sa.Integer(), nullable=True),
        sa.Column("hypervisor", sa.Text(), nullable=True),
        sa.Column("os", sa.Text(), nullable=True),
        sa.Column("release_version", sa.Text(), nullable=True),
        sa.Column("mode", sa.Text(), nullable=True),
        sa.Column("plugins", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fuel_clusters"),
    )
    op.create_index("ix_fuel_clusters_installation_id", "fuel_clusters", ["installation_id"])
    op.create_table(
        "fuel_nodes",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=True),
        sa.Column("node_id", sa.BigInteger(), nullable=True),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("os", sa.Text(), nullable=True),
        sa.Column("manufacturer", sa.Text(), nullable=True),
        sa.Column("platform", sa.Text(), nullable=True),
        sa.Column("cpu_total", sa.Integer(), nullable=True),
        sa.Column("memory_total", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fuel_nodes"),
    )
    op.create_index("ix_fuel_nodes_installation_id", "fuel_nodes", ["installation_id"])
    op.create_table(
        "fuel_action_logs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("master_node_uid", sa.Text(), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("action_type", sa.Text(), nullable=True),
        sa.Column("action_name", sa.Text(), nullable=True),
        sa.Column("cluster_id", sa.BigInteger(), nullable=True),
        sa.Column("ended_status", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("top_level", sa.Boolean(), nullable=False),
        sa.Column("ts_reception", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fuel_action_logs"),
        sa.UniqueConstraint(
            "master_node_uid", "external_id", name="uq_fuel_action_logs_master_node_uid_external_id"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_fuel_action_logs_action_name_action_type",
        "fuel_action_logs",
        ["action_name", "action_type"],
    )
    if op.get_bind().dialect.name == "postgresql":
        # Followed by the failure-report consumer in commit order (downlink.store.follow).
        op.execute(
            "ALTER TABLE fuel_action_logs ADD COLUMN txid xid8 DEFAULT pg_current_xact_id()"
        )
        op.execute(
            "CREATE INDEX ix_fuel_action_logs_follow "
            "ON fuel_action_logs ((COALESCE(txid, '0'::xid8)), id)"
        )
    op.create_table(
        "fuel_oswl_stats",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("master_node_uid", sa.Text(), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=False),
        sa.Column("created_date", sa.Text(), nullable=False),
        sa.Column("updated_time", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=False),
        sa.Column("resource_data", sa.JSON(), nullable=False),
        sa.Column("resource_checksum", sa.Text(), nullable=False),
        sa.Column("version_info", sa.JSON(), nullable=True),
        sa.Column("ts_reception", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fuel_oswl_stats"),
        sa.UniqueConstraint(
            "master_node_uid",
            "external_id",
            "resource_type",
            name="uq_fuel_oswl_stats_master_node_uid_external_id_resource_type",
        ),
    )
    for column in ("master_node_uid", "external_id", "created_date", "resource_type"):
        op.create_index(f"ix_fuel_oswl_stats_{column}", "fuel_oswl_stats", [column])
    op.create_table(
        "fuel_outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("failure_key", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("action_log_id", sa.BigInteger(), nullable=False),
        sa.Column("master_node_uid", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fuel_outbox"),
        sa.UniqueConstraint("failure_key", "channel", name="uq_fuel_outbox_failure_key_channel"),
    )
    op.create_index("ix_fuel_outbox_state", "fuel_outbox", ["state"])


def downgrade() -> None:
    op.drop_index("ix_fuel_outbox_state", table_name="fuel_outbox")
    op.drop_table("fuel_outbox")
    for column in ("master_node_uid", "external_id", "created_date", "resource_type"):
        op.drop_index(f"ix_fuel_oswl_stats_{column}", table_name="fuel_oswl_stats")
    op.drop_table("fuel_oswl_stats")
    op.drop_index("ix_fuel_action_logs_action_name_action_type", table_name="fuel_action_logs")
    op.drop_table("fuel_action_logs")
    op.drop_index("ix_fuel_nodes_installation_id", table_name="fuel_nodes")
    op.drop_table("fuel_nodes")
    op.drop_index("ix_fuel_clusters_installation_id", table_name="fuel_clusters")
    op.drop_table("fuel_clusters")
    op.drop_index("ix_fuel_installation_structures_is_filtered", "fuel_installation_structures")
    op.drop_index("ix_fuel_installation_structures_release", "fuel_installation_structures")
    op.drop_table("fuel_installation_structures")
