"""Background jobs (crash regrouping after "never guilty" edits).

Regrouping every crash record used to run inside the POST that edited the blacklist
(87-192 s at 10M records, holding SQLite's only write lock all along). It is now a row
of ``jobs`` that a server process runs in short chunks (``downlink.sources.clearlinux.regroup``).

Revision ID: 0006_jobs
Revises: 0005_guilty_machines_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_jobs"
down_revision = "0005_guilty_machines_index"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("restart", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("owner", sa.String(32), nullable=True),
        _count("cursor"),
        _count("done"),
        _count("total"),
        _count("changed"),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("heartbeat", sa.Double(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_kind_state", "jobs", ["kind", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_kind_state", table_name="jobs")
    op.drop_table("jobs")
