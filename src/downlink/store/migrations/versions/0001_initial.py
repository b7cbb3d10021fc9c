"""create records, guilty and blacklist

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:44:00.258667
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guilty",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("function", sa.Text(), nullable=False),
        sa.Column("module", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.Column("hide", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guilty")),
        sa.UniqueConstraint("function", "module", name=op.f("uq_guilty_function_module")),
    )
    op.create_table(
        "guilty_blacklist",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("function", sa.Text(), nullable=False),
        sa.Column("module", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guilty_blacklist")),
        sa.UniqueConstraint("function", "module", name=op.f("uq_guilty_blacklist_function_module")),
    )
    op.create_table(
        "records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("record_version", sa.Integer(), nullable=False),
        sa.Column("classification", sa.Text(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        sa.Column("ts_capture", sa.Double(), nullable=False),
        sa.Column("ts_reception", sa.Double(), nullable=False),
        sa.Column("arch", sa.Text(), nullable=False),
        sa.Column("host_type", sa.Text(), nullable=False),
        sa.Column("build", sa.Text(), nullable=False),
        sa.Column("kernel_version", sa.Text(), nullable=False),
        sa.Column("payload_version", sa.Integer(), nullable=False),
        sa.Column("system_name", sa.Text(), nullable=False),
        sa.Column("board_name", sa.Text(), nullable=False),
        sa.Column("cpu_model", sa.Text(), nullable=False),
        sa.Column("bios_version", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.Column("tid", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=True),
        sa.Column("dedup_key", sa.String(length=64), nullable=True),
        sa.Column("guilty_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["guilty_id"], ["guilty.id"], name=op.f("fk_records_guilty_id_guilty")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_records_dedup_key")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_build"), ["build"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_records_classification_ts_reception"),
            ["classification", "ts_reception"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_records_guilty_id"), ["guilty_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_machine_id"), ["machine_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_source_id"), ["source", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_ts_capture"), ["ts_capture"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_ts_reception"), ["ts_reception"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_ts_reception"))
        batch_op.drop_index(batch_op.f("ix_records_ts_capture"))
        batch_op.drop_index(batch_op.f("ix_records_source_id"))
        batch_op.drop_index(batch_op.f("ix_records_machine_id"))
        batch_op.drop_index(batch_op.f("ix_records_guilty_id"))
        batch_op.drop_index(batch_op.f("ix_records_classification_ts_reception"))
        batch_op.drop_index(batch_op.f("ix_records_build"))

    op.drop_table("records")
    op.drop_table("guilty_blacklist")
    op.drop_table("guilty")
