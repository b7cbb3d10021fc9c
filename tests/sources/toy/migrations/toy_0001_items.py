"""create toy_items (the toy source's first revision: a branch of its own)

Revision ID: toy_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "toy_0001"
down_revision = None
branch_labels = ("toy",)
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "toy_items",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("ts_reception", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        # Followed by a consumer: the commit order column (downlink.store.follow).
        op.execute("ALTER TABLE toy_items ADD COLUMN txid xid8 DEFAULT pg_current_xact_id()")
        op.execute(
            "CREATE INDEX ix_toy_items_follow ON toy_items ((COALESCE(txid, '0'::xid8)), id)"
        )


def downgrade() -> None:
    op.drop_table("toy_items")
