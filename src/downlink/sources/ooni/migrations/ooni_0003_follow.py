"""ooni_measurements is followed by the fastpath consumer: the PostgreSQL commit order

Revision ID: ooni_0003
Revises: ooni_0002
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from alembic import op

revision = "ooni_0003"
down_revision = "ooni_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The commit-order column and index of a followed table (downlink.store.follow).
        op.execute(
            "ALTER TABLE ooni_measurements ADD COLUMN txid xid8 DEFAULT pg_current_xact_id()"
        )
        op.execute(
            "CREATE INDEX ix_ooni_measurements_follow "
            "ON ooni_measurements ((COALESCE(txid, '0'::xid8)), id)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_ooni_measurements_follow")
        op.execute("ALTER TABLE ooni_measurements DROP COLUMN txid")
