"""index records by event id (the search box finds a record by its event id)

A partial index, ``records (event_id) WHERE event_id <> ''``: sources whose records
carry no event id (substrate, OONI, fuel-stats store ``''``) add nothing to it, and a
lookup names the same condition so that both databases may use it
(``store/queries/search.py``). Its cost on ingest is measured in
docs/performance.md ("Event id index"): every Clear Linux record adds one entry at a
random place of a B-tree, as ``dedup_key``'s unique index already does.

Building it takes minutes at 10M records; on a large PostgreSQL database build it
beforehand without blocking writes (docs/deployment.md), and this migration leaves it
as it is.

Revision ID: 0025_event_id_index
Revises: 0024_sender_changes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_event_id_index"
down_revision = "0024_sender_changes"
branch_labels = None
depends_on = None

NAME = "ix_records_event_id"
WHERE = sa.text("event_id <> ''")


def upgrade() -> None:
    op.create_index(
        NAME,
        "records",
        ["event_id"],
        if_not_exists=True,
        sqlite_where=WHERE,
        postgresql_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="records", if_exists=True)
