"""HyperLogLog sketches of each crash group's machines, per day and per day and build.

The crashes view counted distinct machines over the period with a COUNT(DISTINCT) over
one ``rollup_guilty_machines`` row per crash: seconds over 60 days at 10M records
(bench/dashboards.py). The sketches (``downlink.store.sketch``) answer it from about
one row per group and day. They are filled here from ``rollup_guilty_machines``.

Revision ID: 0007_guilty_sketches
Revises: 0006_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from downlink.store.migrations._frozen_rollups import rebuild_guilty_sketches

revision = "0007_guilty_sketches"
down_revision = "0006_jobs"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollup_guilty_sketch",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        sa.Column("registers", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("day", "guilty_id", name=op.f("pk_rollup_guilty_sketch")),
    )
    op.create_table(
        "rollup_guilty_build_sketch",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("registers", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "guilty_id", "build", name=op.f("pk_rollup_guilty_build_sketch")
        ),
    )
    rebuild_guilty_sketches(op.get_bind())


def downgrade() -> None:
    op.drop_table("rollup_guilty_build_sketch")
    op.drop_table("rollup_guilty_sketch")
