"""create toy_daily (what the toy consumer derives)

Revision ID: toy_0002
Revises: toy_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "toy_0002"
down_revision = "toy_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "toy_daily",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "name"),
    )


def downgrade() -> None:
    op.drop_table("toy_daily")
