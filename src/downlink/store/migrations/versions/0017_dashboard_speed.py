"""Dashboard speed: sketches without zlib, MCE events per machine and week.

**Sketches.** The crash list over 60 days merges about 2,000 day sketches per request; with each
one zlib-compressed, decompressing them took 37 ms of its 62 ms of CPU at 5.8M
records. ``downlink.store.sketch`` now stores a sketch as its non-zero (index, rank)
pairs, or as its raw registers when fuller, and merges all the sparse ones of a
request in one vectorised maximum. Readers still accept the zlib encoding; this
re-encodes what is stored, one day at a time (downgrade: back to zlib).

**MCE top machines.** The MCE view summed one ``rollup_mce_machines`` row per (week,
class, build, machine) of the period per request for its top 20 machines (the most
CPU of any view at 3.7M records on PostgreSQL); ``rollup_mce_machine_weeks`` keeps
one row per (week, machine), every MCE class and build together, filled here from
``rollup_mce_machines``.

Revision ID: 0017_dashboard_speed
Revises: 0015_senders
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

import downlink.store.migrations._frozen_sketch_0017 as sketch

revision = "0017_dashboard_speed"
down_revision = "0015_senders"
branch_labels = None
depends_on = None

_TABLES = {
    "rollup_guilty_sketch": ("day", "guilty_id"),
    "rollup_guilty_build_sketch": ("day", "guilty_id", "build"),
}


def _reencode(encode: Callable[[bytes], bytes]) -> None:
    conn = op.get_bind()
    for name, keys in _TABLES.items():
        t = sa.table(name, *(sa.column(k) for k in (*keys, "registers")))
        days = conn.execute(sa.select(t.c.day).distinct().order_by(t.c.day)).scalars().all()
        match = sa.and_(*(t.c[k] == sa.bindparam(f"k_{k}") for k in keys))
        change = sa.update(t).where(match).values(registers=sa.bindparam("blob"))
        for day in days:
            rows = conn.execute(sa.select(t).where(t.c.day == day)).all()
            updates = []
            for row in rows:
                blob = bytes(row.registers)
                new = encode(blob)
                if new != blob:
                    updates.append({**{f"k_{k}": row._mapping[k] for k in keys}, "blob": new})
            if updates:
                conn.execute(change, updates)


_MCE_CLASSES = [f"org.clearlinux/mce/{name}" for name in ("corrected", "SRAO", "SRAR", "UCNA")]


def _fill_mce_machine_weeks() -> None:
    """``rollup_mce_machine_weeks`` from ``rollup_mce_machines`` (complete at this
    revision): the MCE classes, not thermal, summed per (week, machine)."""
    mm = sa.table(
        "rollup_mce_machines",
        sa.column("week", sa.Integer()),
        sa.column("classification", sa.Text()),
        sa.column("machine_id", sa.Text()),
        sa.column("count", sa.BigInteger()),
    )
    weeks = sa.table(
        "rollup_mce_machine_weeks",
        sa.column("week", sa.Integer()),
        sa.column("machine_id", sa.Text()),
        sa.column("count", sa.BigInteger()),
    )
    rows = (
        sa.select(mm.c.week, mm.c.machine_id, sa.func.sum(mm.c["count"]))
        .where(mm.c.classification.in_(_MCE_CLASSES))
        .group_by(mm.c.week, mm.c.machine_id)
    )
    op.get_bind().execute(weeks.insert().from_select(["week", "machine_id", "count"], rows))


def upgrade() -> None:
    _reencode(lambda blob: sketch.encode(sketch.registers(blob)))
    op.create_table(
        "rollup_mce_machine_weeks",
        sa.Column("week", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("week", "machine_id", name=op.f("pk_rollup_mce_machine_weeks")),
    )
    _fill_mce_machine_weeks()
    op.create_index(
        "ix_rollup_mce_machine_weeks_by_machine",
        "rollup_mce_machine_weeks",
        ["machine_id", "week", "count"],
    )


def downgrade() -> None:
    op.drop_table("rollup_mce_machine_weeks")
    _reencode(lambda blob: zlib.compress(bytes(sketch.registers(blob)), 1))
