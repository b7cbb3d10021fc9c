"""All-time crash totals per (group, build, machine), for the crash group page.

The page lists a group's machines "most crashes first". Over 60 days at 10M records
that summed the top group's ~360,000 ``rollup_guilty_machines`` rows of the period
per request (about 430 ms of CPU at 6.2M records on PostgreSQL). A machine's all-time
count bounds its count in any period and equals it when its first and last days lie
inside the period, so the page now walks ``rollup_guilty_machine_totals`` by count
and looks up, in ``rollup_guilty_machines (guilty_id, machine_id, ...)``, only the
machines whose crashes straddle the period (``queries/crashes.py``). Filled here from
``rollup_guilty_machines``.

Revision ID: 0012_guilty_machine_totals
Revises: 0011_blacklist_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from downlink.store.migrations._frozen_rollups import fill_machine_totals

revision = "0012_guilty_machine_totals"
down_revision = "0011_blacklist_log"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollup_guilty_machine_totals",
        sa.Column("guilty_id", _ID, autoincrement=False, nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "guilty_id", "build", "machine_id", name=op.f("pk_rollup_guilty_machine_totals")
        ),
    )
    fill_machine_totals(op.get_bind())
    op.create_index(
        "ix_rollup_guilty_machine_totals_by_count",
        "rollup_guilty_machine_totals",
        ["guilty_id", "count", "machine_id", "build", "first_day", "last_day"],
    )
    op.create_index(
        "ix_rollup_guilty_machines_by_machine",
        "rollup_guilty_machines",
        ["guilty_id", "machine_id", "build", "day", "count"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_guilty_machines_by_machine", table_name="rollup_guilty_machines")
    op.drop_table("rollup_guilty_machine_totals")
