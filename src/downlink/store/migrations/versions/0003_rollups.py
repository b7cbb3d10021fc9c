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


def _day() -> sa.Column[int]:
    return sa.Column("day", sa.Integer(), autoincrement=False, nullable=False)


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=False)


def _count(name: str = "count") -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def _source() -> sa.Column[str]:
    return sa.Column("source", sa.String(32), nullable=False)


def _severity() -> sa.Column[int]:
    return sa.Column("severity", sa.Integer(), autoincrement=False, nullable=False)


def upgrade() -> None:
    op.create_table(
        "rollup_daily",
        _day(),
        _source(),
        _text("classification"),
        _text("build"),
        _text("host_type"),
        _severity(),
        _count(),
        _pk("rollup_daily", "day", "source", "classification", "build", "host_type", "severity"),
    )
    op.create_table(
        "rollup_class_daily",
        _day(),
        _source(),
        _text("classification"),
        _severity(),
        _count(),
        _pk("rollup_class_daily", "day", "source", "classification", "severity"),
    )
    op.create_table(
        "rollup_build_daily",
        _day(),
        _source(),
        _text("classification"),
        _severity(),
        _text("build"),
        _count(),
        _pk("rollup_build_daily", "day", "source", "classification", "severity", "build"),
    )
    op.create_table(
        "rollup_platform_daily",
        _day(),
        _source(),
        _text("classification"),
        _severity(),
        _text("host_type"),
        _count(),
        _pk("rollup_platform_daily", "day", "source", "classification", "severity", "host_type"),
    )
    op.create_table(
        "rollup_machines",
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("period", sa.Integer(), autoincrement=False, nullable=False),
        _text("build"),
        _text("machine_id"),
        _pk("rollup_machines", "grain", "period", "build", "machine_id"),
    )
    op.create_table(
        "rollup_population",
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("period", sa.Integer(), autoincrement=False, nullable=False),
        _text("build"),
        _count("machines"),
        _pk("rollup_population", "grain", "period", "build"),
    )
    op.create_table(
        "rollup_guilty",
        _day(),
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        _text("build"),
        _count(),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        _pk("rollup_guilty", "day", "guilty_id", "build"),
    )
    op.create_table(
        "rollup_guilty_machines",
        _day(),
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        _text("build"),
        _text("machine_id"),
        _count(),
        _pk("rollup_guilty_machines", "day", "guilty_id", "build", "machine_id"),
    )
    op.create_table(
        "rollup_mce",
        _day(),
        _text("classification"),
        _text("build"),
        _text("status"),
        _count(),
        _pk("rollup_mce", "day", "classification", "build", "status"),
    )
    op.create_table(
        "rollup_mce_machines",
        sa.Column("week", sa.Integer(), autoincrement=False, nullable=False),
        _text("classification"),
        _text("build"),
        _text("machine_id"),
        _count(),
        _pk("rollup_mce_machines", "week", "classification", "build", "machine_id"),
    )
    # Imported here so that loading the migration script never needs the package.
    from downlink.store.migrations._frozen_rollups import rebuild_rollups

    # The crash-machine sketches come later (0007_guilty_sketches), which fills them.
    rebuild_rollups(op.get_bind(), later_tables=False)


def downgrade() -> None:
    for name in (
        "rollup_mce_machines",
        "rollup_mce",
        "rollup_guilty_machines",
        "rollup_guilty",
        "rollup_population",
        "rollup_machines",
        "rollup_platform_daily",
        "rollup_build_daily",
        "rollup_class_daily",
        "rollup_daily",
    ):
        op.drop_table(name)
