"""Index records by (classification, id) for newest-first lists of one class.

Without it SQLite sorted every record of a class by id for `/api/records?classification=…`
(728 ms at 10M records in bench/queries.py).

Revision ID: 0004_classification_id
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0004_classification_id"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_records_classification_id", "records", ["classification", "id"])


def downgrade() -> None:
    op.drop_index("ix_records_classification_id", table_name="records")
