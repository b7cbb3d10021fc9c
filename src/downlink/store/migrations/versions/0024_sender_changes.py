"""create sender_changes: the log of changed sender bindings, for the servers' caches

Each server process keeps the sender bindings it has seen matching in memory, so that a
known sender's post costs no query (``downlink.security.senders``). What changes a
binding after it was made (``downlink senders rebind`` and ``forget``, a sender
presenting its secret for the first time) appends the ids to this log, numbered in
commit order (``seq``); every process reads the entries after the last one it saw
every second while posts arrive, and drops those ids from its cache.

Revision ID: 0024_sender_changes
Revises: 0020_archive_days
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_sender_changes"
down_revision = "0020_archive_days"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sender_changes",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("seq", "source", "sender_id", name=op.f("pk_sender_changes")),
    )


def downgrade() -> None:
    op.drop_table("sender_changes")
