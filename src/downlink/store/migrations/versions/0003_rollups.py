"""dashboard rollup tables

Revision ID: 0003_rollups
Revises: 0001
Create Date: 2026-11-23 17:00:00

A branch of its own (down_revision 0001): applied with ``upgrade(engine, "heads")``.
Existing records are rolled up once at the end so dashboards are right at once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollups"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _pk(name: str, *cols: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*cols, name=op.f(f"pk_{name}"))


def upgrade() -> None:
    op.create_table(
        "rollup_daily",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("classification", sa.Text(), nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("host_type", sa.Text(), nullable=False),
        sa.Column("severity", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _pk("rollup_daily", "day", "source", "classification", "build", "host_type", "severity"),
    )
    op.create_table(
        "rollup_machines",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        _pk("rollup_machines", "day", "build", "machine_id"),
    )
    op.create_table(
        "rollup_population",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("machines", sa.BigInteger(), nullable=False),
        _pk("rollup_population", "day", "build"),
    )
    op.create_table(
        "rollup_guilty",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        _pk("rollup_guilty", "day", "guilty_id", "build"),
    )
    op.create_table(
        "rollup_guilty_machines",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        _pk("rollup_guilty_machines", "day", "guilty_id", "build", "machine_id"),
    )
    op.create_table(
        "rollup_mce",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("classification", sa.Text(), nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _pk("rollup_mce", "day", "classification", "build", "machine_id", "status"),
    )
    # Imported here so that loading the migration script never needs the package.
    from downlink.pipeline.rollups import rebuild_rollups

    rebuild_rollups(op.get_bind())


def downgrade() -> None:
    for name in (
        "rollup_mce",
        "rollup_guilty_machines",
        "rollup_guilty",
        "rollup_population",
        "rollup_machines",
        "rollup_daily",
    ):
        op.drop_table(name)
