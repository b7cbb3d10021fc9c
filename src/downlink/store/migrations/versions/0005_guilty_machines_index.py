"""Index the crash-machine rollup by (guilty_id, day).

Its primary key starts with the day, so one crash group's machines over a period were
found by scanning every group's rows of that period (seen in SQLite's plan at 10M
records, bench/dashboards.py).

Revision ID: 0005_guilty_machines_index
Revises: 0003_rollups
"""

from __future__ import annotations

from alembic import op

revision = "0005_guilty_machines_index"
down_revision = "0003_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_rollup_guilty_machines_guilty_id_day", "rollup_guilty_machines", ["guilty_id", "day"]
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_guilty_machines_guilty_id_day", table_name="rollup_guilty_machines")
