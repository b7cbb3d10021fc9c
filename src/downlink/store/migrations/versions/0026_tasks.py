"""create tasks: the leases and last outcomes of the sources' periodic background tasks

A source's ``Source.tasks`` (OONI's hourly raw archive) run in every process that runs
the consumers; one process at a time holds a task's lease here, and the last success
and the last failure are kept for ``/consumers`` (``downlink.pipeline.tasks``).

Revision ID: 0026_tasks
Revises: 0025_event_id_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_tasks"
down_revision = "0025_event_id_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("ran_at", sa.Double(), nullable=True),
        sa.Column("done", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tasks")),
    )


def downgrade() -> None:
    op.drop_table("tasks")
