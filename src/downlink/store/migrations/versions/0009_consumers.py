"""Consumer cursors, and the commit order of ``records`` on PostgreSQL.

Derived data is maintained after the ack by consumers that follow a table in commit
order (``downlink.pipeline.consumers``). On PostgreSQL several writer processes
commit ids out of order, so each followed table carries ``txid xid8 DEFAULT
pg_current_xact_id()``, the writing transaction's id, indexed with the id in the order
consumers read (rows of transactions older than every running one first). The column
is added without rewriting the table: rows already stored keep NULL, read as 0 (they
were committed before any consumer existed). SQLite commits one transaction at a
time, so its ids are in commit order and it needs no such column.

Revision ID: 0009_consumers
Revises: 0008_mce_machines_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_consumers"
down_revision = "0008_mce_machines_index"
branch_labels = None
depends_on = None


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "consumers",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("follows", sa.String(64), nullable=False),
        _count("txid"),
        _count("last_id"),
        _count("handled"),
        sa.Column("last_ts", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_consumers")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Two statements, neither rewriting the table: a volatile default given in
        # ADD COLUMN would fill every existing row.
        op.execute("ALTER TABLE records ADD COLUMN txid xid8")
        op.execute("ALTER TABLE records ALTER COLUMN txid SET DEFAULT pg_current_xact_id()")
        op.execute("CREATE INDEX ix_records_follow ON records ((COALESCE(txid, '0'::xid8)), id)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_records_follow")
        op.execute("ALTER TABLE records DROP COLUMN txid")
    op.drop_table("consumers")
