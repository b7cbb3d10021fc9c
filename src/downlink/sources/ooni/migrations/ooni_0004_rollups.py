"""aggregation rollups (ooni_agg_*), counted from the existing fastpath rows; indexes
for the aggregation's raw filters (probe_asn, input)

Revision ID: ooni_0004
Revises: ooni_0003
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "ooni_0004"
down_revision = "ooni_0003"
branch_labels = None
depends_on = None

COUNTS = ("anomaly_count", "confirmed_count", "failure_count", "ok_count", "measurement_count")
LEVELS = (
    ("ooni_agg_day_cc", "day", 86400, ("probe_cc", "test_name", "blocking_type")),
    ("ooni_agg_day_asn", "day", 86400, ("probe_cc", "probe_asn", "test_name", "blocking_type")),
    ("ooni_agg_day_domain", "day", 86400, ("probe_cc", "test_name", "domain", "blocking_type")),
    ("ooni_agg_hour_cc", "hour", 3600, ("probe_cc", "test_name", "blocking_type")),
)
TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "probe_cc": sa.String(length=2), "probe_asn": sa.BigInteger(), "test_name": sa.Text(),
    "domain": sa.Text(), "blocking_type": sa.Text(),
}
SUMS = (
    "SUM(CASE WHEN anomaly AND NOT confirmed AND NOT msm_failure THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN confirmed AND NOT msm_failure THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN msm_failure THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN NOT anomaly AND NOT confirmed AND NOT msm_failure THEN 1 ELSE 0 END), "
    "COUNT(*)"
)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for name, bucket, seconds, dims in LEVELS:
        op.create_table(
            name,
            sa.Column(bucket, sa.BigInteger(), nullable=False),
            *(sa.Column(d, TYPES[d], nullable=False) for d in dims),
            *(sa.Column(n, sa.BigInteger(), nullable=False) for n in COUNTS),
            sa.PrimaryKeyConstraint(bucket, *dims, name=f"pk_{name}"),
        )
        for d in ("probe_cc", "probe_asn", "domain"):
            if d in dims:
                op.create_index(f"ix_{name}_{d}_{bucket}", name, [d, bucket])
        floor = (
            f"CAST(floor(measurement_start_time / {seconds}) AS BIGINT)" if pg
            else f"CAST(measurement_start_time AS BIGINT) / {seconds}"
        )
        cols = ", ".join(dims)
        op.execute(
            f"INSERT INTO {name} ({bucket}, {cols}, {', '.join(COUNTS)}) "
            f"SELECT {floor}, {cols}, {SUMS} FROM ooni_fastpath "
            f"WHERE measurement_start_time IS NOT NULL GROUP BY {floor}, {cols}"
        )
    op.create_index(
        "ix_ooni_fastpath_probe_asn_measurement_start_time", "ooni_fastpath",
        ["probe_asn", "measurement_start_time"],
    )
    op.create_index(
        "ix_ooni_fastpath_input_measurement_start_time", "ooni_fastpath",
        ["input", "measurement_start_time"],
    )


def downgrade() -> None:
    op.drop_index("ix_ooni_fastpath_input_measurement_start_time", "ooni_fastpath")
    op.drop_index("ix_ooni_fastpath_probe_asn_measurement_start_time", "ooni_fastpath")
    for name, _bucket, _seconds, _dims in reversed(LEVELS):
        op.drop_table(name)
