"""create fuel_deployments (environments' first successful deployment, kept by a
consumer) and a covering index of fuel_counts for reports over every day

The ``fuelstats_deployments`` consumer fills it after the ack, and its rows' share of
``fuel_counts`` (report ``failures_before_success``). A new consumer's cursor starts at
the first action log, so on an existing database the consumer goes through every stored
action log once after this upgrade; nothing needs filling here (and a migration never
runs application code).

Revision ID: fuelstats_0003
Revises: fuelstats_0002
Create Date: 2026-12-01 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fuelstats_0003"
down_revision = "fuelstats_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fuel_deployments",
        sa.Column("master_node_uid", sa.Text(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=False),
        sa.Column("ok_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("fails", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("master_node_uid", "cluster_id", name="pk_fuel_deployments"),
    )
    op.create_index("ix_fuel_counts_report_key", "fuel_counts",
                    ["report", "key", "release", "day", "n", "total"])


def downgrade() -> None:
    op.drop_index("ix_fuel_counts_report_key", table_name="fuel_counts")
    op.drop_table("fuel_deployments")
