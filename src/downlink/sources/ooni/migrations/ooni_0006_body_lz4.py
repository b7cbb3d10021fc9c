"""ooni_body_lz4: measurement bodies compressed with lz4 on PostgreSQL

PostgreSQL compresses a 50 KB body before storing it out of line (TOAST). With its
default method (pglz) that cost about 770 us of the server's CPU per submission, three
times the rest of the write; lz4 gives bodies of the same size (7.2 KB for the
benchmark's body) for about 200 us (bench/ooni_submit_cpu.py, docs/performance.md).
Only the column's method changes (no rewrite: bodies already stored stay as they are,
and read the same). A server built without lz4, and SQLite, are left alone.

Revision ID: ooni_0006
Revises: ooni_0005
Create Date: 2026-12-01 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ooni_0006"
down_revision = "ooni_0005"
branch_labels = None
depends_on = None


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.execute(sa.text(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
        " AND 'lz4' = ANY(enumvals)"
    )).first()
    return found is not None


def upgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE ooni_measurements ALTER COLUMN body SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE ooni_measurements ALTER COLUMN body SET COMPRESSION default")
