"""create archive_days: the raw archive consumer's open and closed days

The archive consumer (``downlink.archive``) stages each committed row of an archived
table in the day's open segments and counts it here in the transaction that moves its
cursor; a day is closed (its deterministic files written) when it is over, and
``closed`` records how many rows those files hold.

Revision ID: 0020_archive_days
Revises: 0017_dashboard_speed
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_archive_days"
down_revision = "0017_dashboard_speed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_days",
        sa.Column("archive", sa.String(128), nullable=False),
        sa.Column("day", sa.String(8), nullable=False),
        sa.Column("staged", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("closed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("closed_at", sa.Double(), nullable=True),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("archive", "day", name=op.f("pk_archive_days")),
    )


def downgrade() -> None:
    op.drop_table("archive_days")
