"""ooni_citizenlab: the test lists' URL categories, for category_code

Revision ID: ooni_0005
Revises: ooni_0004
Create Date: 2026-11-30 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ooni_0005"
down_revision = "ooni_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ooni_citizenlab",
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("cc", sa.String(length=2), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("category_code", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("url", "cc", name="pk_ooni_citizenlab"),
    )
    op.create_index(
        "ix_ooni_citizenlab_category_code_url", "ooni_citizenlab", ["category_code", "url"]
    )


def downgrade() -> None:
    op.drop_table("ooni_citizenlab")
