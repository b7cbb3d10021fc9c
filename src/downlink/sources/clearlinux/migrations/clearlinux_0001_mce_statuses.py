"""clearlinux_0001: MCE rollups sized to the charts, statuses ranked from their totals

``rollup_mce`` holds one row per (day, class, build, MCE status), and a status is
sender-controlled text: with a random STATUS on every machine check (the scale bench,
or a hostile sender) it holds one row per record, and the MCE view summed all of a
period's (3.8 s at 5M records on PostgreSQL). From this revision on the view reads:

* ``rollup_mce_daily``: the same counts without the status, per (day, class, build),
  for its weekly, class and build charts and the period's total;
* ``rollup_mce_statuses`` and ``rollup_mce_build_statuses``: every MCE event (the four
  MCE classes, not thermal) of a status, all builds or per build, whatever the day,
  with its first and last day, to rank a period's statuses most first;
* ``rollup_mce`` through ``ix_rollup_mce_by_status``, for the period's events of the
  few statuses ranked; the day-led covering index, read by nothing now, goes.

All three are filled here from ``rollup_mce`` (complete at this revision). Down again,
they go and the day-led index comes back.

Revision ID: clearlinux_0001
Revises:
Depends on: 0017_dashboard_speed (the MCE rollups as they stand)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "clearlinux_0001"
down_revision = None
branch_labels = ("clearlinux",)
depends_on = ("0017_dashboard_speed",)

# The MCE classes when this was written (the thermal class is counted apart).
_MCE_CLASSES = [f"org.clearlinux/mce/{name}" for name in ("corrected", "SRAO", "SRAR", "UCNA")]
_SPANS = ("rollup_mce_statuses", "rollup_mce_build_statuses")


def _span_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "rollup_mce_daily",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("classification", sa.Text(), nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "classification", "build", name="pk_rollup_mce_daily"),
    )
    op.create_table(
        "rollup_mce_statuses",
        *_span_columns(),
        sa.PrimaryKeyConstraint("status", name="pk_rollup_mce_statuses"),
    )
    op.create_table(
        "rollup_mce_build_statuses",
        sa.Column("build", sa.Text(), nullable=False),
        *_span_columns(),
        sa.PrimaryKeyConstraint("build", "status", name="pk_rollup_mce_build_statuses"),
    )
    mce = sa.table(
        "rollup_mce",
        sa.column("day", sa.Integer()),
        sa.column("classification", sa.Text()),
        sa.column("build", sa.Text()),
        sa.column("status", sa.Text()),
        sa.column("count", sa.BigInteger()),
    )
    m = mce.c
    bind = op.get_bind()
    daily = sa.table(
        "rollup_mce_daily", *(sa.column(n) for n in ("day", "classification", "build", "count"))
    )
    bind.execute(
        daily.insert().from_select(
            ["day", "classification", "build", "count"],
            sa.select(m.day, m.classification, m.build, sa.func.sum(m["count"]))
            .group_by(m.day, m.classification, m.build),
        )
    )
    for name, key in (("rollup_mce_statuses", ("status",)),
                      ("rollup_mce_build_statuses", ("build", "status"))):
        columns = [*key, "count", "first_day", "last_day"]
        target = sa.table(name, *(sa.column(n) for n in columns))
        by = [m[k] for k in key]
        bind.execute(
            target.insert().from_select(
                columns,
                sa.select(*by, sa.func.sum(m["count"]), sa.func.min(m.day), sa.func.max(m.day))
                .where(m.classification.in_(_MCE_CLASSES))
                .group_by(*by),
            )
        )
    op.create_index(
        "ix_rollup_mce_statuses_by_count",
        "rollup_mce_statuses",
        ["count", "status", "first_day", "last_day"],
    )
    op.create_index(
        "ix_rollup_mce_build_statuses_by_count",
        "rollup_mce_build_statuses",
        ["build", "count", "status", "first_day", "last_day"],
    )
    op.drop_index("ix_rollup_mce_by_day", table_name="rollup_mce")
    op.create_index(
        "ix_rollup_mce_by_status",
        "rollup_mce",
        ["status", "day", "classification", "build", "count"],
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_mce_by_status", table_name="rollup_mce")
    op.create_index(
        "ix_rollup_mce_by_day",
        "rollup_mce",
        ["day", "classification", "build", "status", "count"],
    )
    for name in (*_SPANS, "rollup_mce_daily"):
        op.drop_table(name)
