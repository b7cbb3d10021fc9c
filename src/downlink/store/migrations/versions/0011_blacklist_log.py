"""The "never guilty" list's history: who added or removed a frame, when and why.

Revision ID: 0011_blacklist_log
Revises: 0010_skew_robust_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_blacklist_log"
down_revision = "0010_skew_robust_indexes"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=False, server_default="")


def upgrade() -> None:
    op.create_table(
        "guilty_blacklist_log",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("function", sa.Text(), nullable=False),
        sa.Column("module", sa.Text(), nullable=False),
        _text("who"),
        _text("address"),
        _text("why"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guilty_blacklist_log")),
    )
    op.create_index(
        "ix_guilty_blacklist_log_function_module_id",
        "guilty_blacklist_log",
        ["function", "module", "id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_guilty_blacklist_log_function_module_id", table_name="guilty_blacklist_log"
    )
    op.drop_table("guilty_blacklist_log")
