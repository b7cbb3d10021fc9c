"""The OONI source's tables (all named ``ooni_*``); its migrations create exactly these.

* ``ooni_measurements`` is the durable log: one row per accepted submission, holding
  the stored body. A submission is answered 200 only once its row is committed; the
  fastpath consumer follows this table by ``id``.
* ``ooni_fastpath`` is the scored row of each measurement (OONI's ``fastpath``
  columns), keyed by ``measurement_uid`` so re-scoring replaces rather than adds.
* ``ooni_fingerprints`` replaces the shipped fingerprints once loaded from the CLI;
  ``ooni_state`` holds small named values (the fingerprints' version).
* ``ooni_archive_index`` locates each archived measurement (file key, line).
* ``ooni_quotas`` are the per-address API quota buckets, shared by all workers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

measurements = Table(
    "ooni_measurements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("measurement_uid", String(100), nullable=False, unique=True),
    Column("report_id", Text, nullable=False),
    Column("probe_cc", String(2), nullable=False),
    Column("probe_asn", BigInteger, nullable=False),
    Column("test_name", Text, nullable=False),
    Column("ts_reception", Double, nullable=False),
    Column("is_verified", String(1), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Index(None, "ts_reception"),
    # Followed by the fastpath consumer: SQLite must never reuse a deleted row's id; on
    # PostgreSQL migration ooni_0003 adds the txid column (downlink.store.follow).
    sqlite_autoincrement=True,
)

fastpath = Table(
    "ooni_fastpath",
    metadata,
    Column("measurement_uid", String(100), primary_key=True),
    Column("report_id", Text, nullable=False),
    Column("input", Text, nullable=False),
    Column("probe_cc", String(2), nullable=False),
    Column("probe_asn", BigInteger, nullable=False),
    Column("test_name", Text, nullable=False),
    Column("test_start_time", Double),
    Column("measurement_start_time", Double),
    Column("filename", Text, nullable=False),
    Column("scores", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("anomaly", Boolean, nullable=False),
    Column("confirmed", Boolean, nullable=False),
    Column("msm_failure", Boolean, nullable=False),
    Column("domain", Text, nullable=False),
    Column("software_name", Text, nullable=False),
    Column("software_version", Text, nullable=False),
    Column("control_failure", Text, nullable=False),
    Column("blocking_general", Double, nullable=False),
    Column("is_ssl_expected", Integer, nullable=False),
    Column("page_len", Integer, nullable=False),
    Column("page_len_ratio", Double, nullable=False),
    Column("server_cc", Text, nullable=False),
    Column("server_asn", BigInteger, nullable=False),
    Column("server_as_name", Text, nullable=False),
    Column("update_time", Double, nullable=False),
    Column("test_version", Text, nullable=False),
    Column("architecture", Text, nullable=False),
    Column("engine_name", Text, nullable=False),
    Column("engine_version", Text, nullable=False),
    Column("test_runtime", Double, nullable=False),
    Column("blocking_type", Text, nullable=False),
    Column("test_helper_address", Text, nullable=False),
    Column("test_helper_type", Text, nullable=False),
    Column("ooni_run_link_id", BigInteger),
    Column("is_verified", String(1), nullable=False),
    Column("ts_reception", Double, nullable=False),
    Index(None, "measurement_start_time"),
    Index(None, "probe_cc", "measurement_start_time"),
    Index(None, "test_name", "measurement_start_time"),
    Index(None, "domain", "measurement_start_time"),
    Index(None, "report_id"),
    Index(None, "ts_reception"),
    Index(None, "probe_asn", "measurement_start_time"),
    Index(None, "input", "measurement_start_time"),
)

fingerprints = Table(
    "ooni_fingerprints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("location_found", Text, nullable=False),
    Column("pattern_type", Text, nullable=False),
    Column("pattern", Text, nullable=False),
    Column("confidence_no_fp", Integer, nullable=False),
    Column("expected_countries", Text, nullable=False),
    Column("other_names", Text, nullable=False),
)

state = Table(
    "ooni_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

archive_index = Table(
    "ooni_archive_index",
    metadata,
    Column("measurement_uid", String(100), primary_key=True),
    Column("key", Text, nullable=False),
    Column("line", Integer, nullable=False),
)

# The citizenlab test lists (``downlink ooni testlists load``): each URL's category in
# a country's list (``cc``) or the global one (``ZZ``), for ``category_code``.
citizenlab = Table(
    "ooni_citizenlab",
    metadata,
    Column("url", Text, primary_key=True),
    Column("cc", String(2), primary_key=True),
    Column("domain", Text, nullable=False),
    Column("category_code", Text, nullable=False),
    Index(None, "category_code", "url"),
)

quotas = Table(
    "ooni_quotas",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("updated_at", Double, nullable=False),
    Column("hour", Double, nullable=False),
    Column("day", Double, nullable=False),
    Column("week", Double, nullable=False),
)


def _rollup(name: str, bucket: str, dims: tuple[str, ...]) -> Table:
    types: dict[str, TypeEngine[Any]] = {
        "probe_cc": String(2), "probe_asn": BigInteger(), "test_name": Text(),
        "domain": Text(), "blocking_type": Text(),
    }
    # Besides the primary key (the bucket first: a period is one range), an index per
    # filterable dimension led by it, then the bucket: a filtered query reads only its
    # rows of the period (docs/architecture.md, "one index matches every condition").
    filtered = [d for d in ("probe_cc", "probe_asn", "domain") if d in dims]
    return Table(
        name,
        metadata,
        Column(bucket, BigInteger, primary_key=True),
        *(Column(d, types[d], primary_key=True) for d in dims),
        *(Column(n, BigInteger, nullable=False) for n in ROLLUP_COUNTS),
        *(Index(None, d, bucket) for d in filtered),
    )


# Aggregation rollups (``rollup.py``): OONI's four counts per time bucket and a few
# dimensions, kept by the fastpath writer in the same transaction as its rows. The
# primary key leads with the bucket, so a period's rows are one index range.
ROLLUP_COUNTS = (
    "anomaly_count", "confirmed_count", "failure_count", "ok_count", "measurement_count",
)
agg_day_cc = _rollup("ooni_agg_day_cc", "day", ("probe_cc", "test_name", "blocking_type"))
agg_day_asn = _rollup(
    "ooni_agg_day_asn", "day", ("probe_cc", "probe_asn", "test_name", "blocking_type")
)
agg_day_domain = _rollup(
    "ooni_agg_day_domain", "day", ("probe_cc", "test_name", "domain", "blocking_type")
)
agg_hour_cc = _rollup("ooni_agg_hour_cc", "hour", ("probe_cc", "test_name", "blocking_type"))
