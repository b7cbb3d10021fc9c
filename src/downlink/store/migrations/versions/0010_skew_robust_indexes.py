"""Indexes that keep the dashboards fast whatever the planner's statistics say.

* ``records (source, ts_reception)``: a source's recent records (the nodes page,
  retention purges) through one index that matches every condition. Without it
  SQLite walked all of ``records`` for ``/substrate`` (39 s at 10M records) when its
  statistics said every record was Clear Linux.
* ``records (guilty_id, id)`` replaces ``(guilty_id)``: a crash group's newest records
  (the backtraces page) in one index; PostgreSQL walked the primary key backwards,
  filtering, until 50 of the group turned up (all of ``records`` for a group whose
  crashes are old).
* ``rollup_guilty_machines (guilty_id, day, build, machine_id, count)`` replaces
  ``(guilty_id, day)``: one crash group's rows of a period are read from the index
  alone, in one contiguous run, instead of one table page per row (the crash group
  page took 325-358 ms at 10M records, 1 s cold).
* ``rollup_guilty`` and ``rollup_mce`` get covering indexes led by the day, so the
  crashes and MCE views read a period without a table lookup per row.

Building the two ``records`` indexes takes minutes at 10M records; on PostgreSQL they
can be built beforehand without blocking writes (docs/deployment.md).

Revision ID: 0010_skew_robust_indexes
Revises: 0009_consumers
"""

from __future__ import annotations

from alembic import op

revision = "0010_skew_robust_indexes"
down_revision = "0009_consumers"
branch_labels = None
depends_on = None

_NEW = (
    ("ix_records_source_ts_reception", "records", ["source", "ts_reception"]),
    ("ix_records_guilty_id_id", "records", ["guilty_id", "id"]),
    (
        "ix_rollup_guilty_machines_by_group",
        "rollup_guilty_machines",
        ["guilty_id", "day", "build", "machine_id", "count"],
    ),
    (
        "ix_rollup_guilty_by_day",
        "rollup_guilty",
        ["day", "guilty_id", "build", "count", "first_seen", "last_seen"],
    ),
    ("ix_rollup_mce_by_day", "rollup_mce", ["day", "classification", "build", "status", "count"]),
)


def upgrade() -> None:
    for name, table, columns in _NEW:
        # IF NOT EXISTS: on a large PostgreSQL database an operator may build the
        # indexes beforehand with CREATE INDEX CONCURRENTLY (same names and columns),
        # so that the upgrade does not hold up ingestion while they are built.
        op.create_index(name, table, columns, if_not_exists=True)
    for name, table in (
        ("ix_rollup_guilty_machines_guilty_id_day", "rollup_guilty_machines"),
        ("ix_records_guilty_id", "records"),
    ):
        op.drop_index(name, table_name=table, if_exists=True)


def downgrade() -> None:
    op.create_index("ix_records_guilty_id", "records", ["guilty_id"])
    op.create_index(
        "ix_rollup_guilty_machines_guilty_id_day", "rollup_guilty_machines", ["guilty_id", "day"]
    )
    for name, table, _ in reversed(_NEW):
        op.drop_index(name, table_name=table)
