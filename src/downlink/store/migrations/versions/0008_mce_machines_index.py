"""Index the weekly MCE-machine rollup by machine, covering the top-machines query.

The MCE view's top machines summed every row of the period in a temporary B-tree keyed
by machine (670 ms of SQLite's 700 at 10M records, bench/dashboards.py); with this
index SQLite reads the totals in machine order from the index alone (45 ms).

Revision ID: 0008_mce_machines_index
Revises: 0007_guilty_sketches
"""

from __future__ import annotations

from alembic import op

revision = "0008_mce_machines_index"
down_revision = "0007_guilty_sketches"
branch_labels = None
depends_on = None

_COLUMNS = ["machine_id", "week", "classification", "build", "count"]


def upgrade() -> None:
    op.create_index(
        "ix_rollup_mce_machines_by_machine",
        "rollup_mce_machines",
        _COLUMNS,
    )
    # Without statistics on the new index SQLite's planner keeps the old plan.
    op.execute("ANALYZE rollup_mce_machines")


def downgrade() -> None:
    op.drop_index(
        "ix_rollup_mce_machines_by_machine",
        table_name="rollup_mce_machines",
    )
