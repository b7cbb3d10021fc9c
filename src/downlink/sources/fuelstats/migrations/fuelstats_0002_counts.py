"""create fuel_counts: the dashboard's counts kept at ingest

The counts of installations stored before this revision are filled in by the
``fuel_recount`` job, which the server queues at start while ``fuel_counts`` is empty
and an installation is shown (a migration never runs application code).

Revision ID: fuelstats_0002
Revises: fuelstats_0001
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fuelstats_0002"
down_revision = "fuelstats_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fuel_counts",
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("release", sa.Text(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("report", "release", "day", "key", name="pk_fuel_counts"),
    )
    op.create_index("ix_fuel_counts_report_day", "fuel_counts", ["report", "day"])


def downgrade() -> None:
    op.drop_table("fuel_counts")
