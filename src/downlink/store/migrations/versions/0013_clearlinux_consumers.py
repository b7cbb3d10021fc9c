"""Clear Linux's crash grouping and rollups leave the insert transaction.

From this revision on, two consumers maintain them after the ack
(``downlink.sources.clearlinux.consumers``: ``clearlinux_crashes`` and
``clearlinux_rollups``). Every record stored before it was grouped and counted by the
writer, so both consumers start after the last of them: their cursors are set to the
last record in commit order (nothing writes while migrations run). Down again, the
cursor rows go; the writer of that version counts at ingest.

Revision ID: 0013_clearlinux_consumers
Revises: 0012_guilty_machine_totals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_clearlinux_consumers"
down_revision = "0012_guilty_machine_totals"
branch_labels = None
depends_on = None

NAMES = ("clearlinux_crashes", "clearlinux_rollups")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        last = bind.exec_driver_sql(
            "SELECT CAST(CAST(COALESCE(txid, '0'::xid8) AS text) AS bigint), id FROM records "
            "ORDER BY COALESCE(txid, '0'::xid8) DESC, id DESC LIMIT 1"
        ).first()
    else:
        last = bind.exec_driver_sql("SELECT 0, id FROM records ORDER BY id DESC LIMIT 1").first()
    txid, last_id = (int(last[0]), int(last[1])) if last else (0, 0)
    consumers = sa.table(
        "consumers",
        sa.column("name"),
        sa.column("follows"),
        sa.column("txid"),
        sa.column("last_id"),
        sa.column("handled"),
        sa.column("failures"),
    )
    for name in NAMES:
        bind.execute(consumers.delete().where(consumers.c.name == name))
        bind.execute(
            consumers.insert().values(
                name=name, follows="records", txid=txid, last_id=last_id, handled=0, failures=0
            )
        )


def downgrade() -> None:
    consumers = sa.table("consumers", sa.column("name"))
    op.get_bind().execute(consumers.delete().where(consumers.c.name.in_(NAMES)))
