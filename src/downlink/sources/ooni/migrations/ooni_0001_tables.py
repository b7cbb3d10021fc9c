"""create the OONI tables: the measurement log, fastpath, fingerprints, state, quotas

Revision ID: ooni_0001
Revises:
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "ooni_0001"
down_revision = None
branch_labels = ("ooni",)
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ooni_measurements",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("measurement_uid", sa.String(length=100), nullable=False),
        sa.Column("report_id", sa.Text(), nullable=False),
        sa.Column("probe_cc", sa.String(length=2), nullable=False),
        sa.Column("probe_asn", sa.BigInteger(), nullable=False),
        sa.Column("test_name", sa.Text(), nullable=False),
        sa.Column("ts_reception", sa.Double(), nullable=False),
        sa.Column("is_verified", sa.String(length=1), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ooni_measurements"),
        sa.UniqueConstraint("measurement_uid", name="uq_ooni_measurements_measurement_uid"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ooni_measurements_ts_reception", "ooni_measurements", ["ts_reception"])

    text_cols = (
        "report_id", "input", "probe_cc", "probe_asn", "test_name", "test_start_time",
        "measurement_start_time", "filename", "scores", "platform", "anomaly", "confirmed",
        "msm_failure", "domain", "software_name", "software_version", "control_failure",
        "blocking_general", "is_ssl_expected", "page_len", "page_len_ratio", "server_cc",
        "server_asn", "server_as_name", "update_time", "test_version", "architecture",
        "engine_name", "engine_version", "test_runtime", "blocking_type",
        "test_helper_address", "test_helper_type", "ooni_run_link_id", "is_verified",
        "ts_reception",
    )
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "probe_cc": sa.String(length=2), "probe_asn": sa.BigInteger(),
        "test_start_time": sa.Double(), "measurement_start_time": sa.Double(),
        "anomaly": sa.Boolean(), "confirmed": sa.Boolean(), "msm_failure": sa.Boolean(),
        "blocking_general": sa.Double(), "is_ssl_expected": sa.Integer(),
        "page_len": sa.Integer(), "page_len_ratio": sa.Double(), "server_asn": sa.BigInteger(),
        "update_time": sa.Double(), "test_runtime": sa.Double(),
        "ooni_run_link_id": sa.BigInteger(), "is_verified": sa.String(length=1),
        "ts_reception": sa.Double(),
    }
    nullable = {"test_start_time", "measurement_start_time", "ooni_run_link_id"}
    op.create_table(
        "ooni_fastpath",
        sa.Column("measurement_uid", sa.String(length=100), nullable=False),
        *(
            sa.Column(name, types.get(name, sa.Text()), nullable=name in nullable)
            for name in text_cols
        ),
        sa.PrimaryKeyConstraint("measurement_uid", name="pk_ooni_fastpath"),
    )
    for cols in (
        ["measurement_start_time"],
        ["probe_cc", "measurement_start_time"],
        ["test_name", "measurement_start_time"],
        ["domain", "measurement_start_time"],
        ["report_id"],
        ["ts_reception"],
    ):
        op.create_index("ix_ooni_fastpath_" + "_".join(cols), "ooni_fastpath", cols)

    op.create_table(
        "ooni_fingerprints",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("location_found", sa.Text(), nullable=False),
        sa.Column("pattern_type", sa.Text(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("confidence_no_fp", sa.Integer(), nullable=False),
        sa.Column("expected_countries", sa.Text(), nullable=False),
        sa.Column("other_names", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ooni_fingerprints"),
    )
    op.create_table(
        "ooni_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_ooni_state"),
    )
    op.create_table(
        "ooni_quotas",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("day", sa.Double(), nullable=False),
        sa.Column("week", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_ooni_quotas"),
    )


def downgrade() -> None:
    for table in ("ooni_quotas", "ooni_state", "ooni_fingerprints", "ooni_fastpath",
                  "ooni_measurements"):
        op.drop_table(table)
