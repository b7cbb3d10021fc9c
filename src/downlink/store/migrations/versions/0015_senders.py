"""Sender bindings (trust on first use) and the flag on records of mismatching senders.

``senders`` binds each (source, sender id) to a secret, a network and a certificate
fingerprint at its first accepted post (``downlink.security.senders``); a record whose
sender does not match, from a source whose rule is to keep such records, is stored
with ``records.sender_flagged`` true and left out of dashboards and reports. Adding a
nullable column without a default is instant on both databases, whatever the size of
``records``.

Revision ID: 0015_senders
Revises: 0012_guilty_machine_totals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_senders"
down_revision = "0013_clearlinux_consumers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "senders",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("secret_seen", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("network", sa.Text(), nullable=False, server_default=""),
        sa.Column("cert", sa.Text(), nullable=True),
        sa.Column("bound_at", sa.Double(), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("flagged", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_mismatch_at", sa.Double(), nullable=True),
        sa.Column("last_mismatch_from", sa.Text(), nullable=True),
        sa.Column("last_mismatch_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("source", "sender_id", name=op.f("pk_senders")),
    )
    op.create_index("ix_senders_last_mismatch_at", "senders", ["last_mismatch_at"])
    op.add_column("records", sa.Column("sender_flagged", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("records", "sender_flagged")
    op.drop_index("ix_senders_last_mismatch_at", table_name="senders")
    op.drop_table("senders")
