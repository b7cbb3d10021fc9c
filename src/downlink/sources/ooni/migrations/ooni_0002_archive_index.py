"""create ooni_archive_index: where each archived measurement is (file key, line)

Revision ID: ooni_0002
Revises: ooni_0001
Create Date: 2026-11-30 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ooni_0002"
down_revision = "ooni_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ooni_archive_index",
        sa.Column("measurement_uid", sa.String(length=100), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("measurement_uid", name="pk_ooni_archive_index"),
    )


def downgrade() -> None:
    op.drop_table("ooni_archive_index")
