"""Crash-group machine sketches re-encoded: sparse pairs or raw registers, no zlib.

The crash list over 60 days merges about 2,000 day sketches per request; with each
one zlib-compressed, decompressing them took 37 ms of its 62 ms of CPU at 5.8M
records. ``downlink.store.sketch`` now stores a sketch as its non-zero (index, rank)
pairs, or as its raw registers when fuller, and merges all the sparse ones of a
request in one vectorised maximum. Readers still accept the zlib encoding; this
re-encodes what is stored, one day at a time (downgrade: back to zlib). No schema
change.

Revision ID: 0017_sparse_sketches
Revises: 0012_guilty_machine_totals
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from downlink.store import sketch

revision = "0017_sparse_sketches"
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


def upgrade() -> None:
    _reencode(lambda blob: sketch.encode(sketch.registers(blob)))


def downgrade() -> None:
    _reencode(lambda blob: zlib.compress(bytes(sketch.registers(blob)), 1))
