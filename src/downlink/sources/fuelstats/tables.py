"""The fuel-stats tables (``fuel_*``), created by this source's own migrations.

* ``fuel_installation_structures``: one row per Fuel master node (``master_node_uid``),
  the whole structure document as last sent, with ``release`` and ``is_filtered``
  promoted to indexed columns. ``is_filtered`` is never NULL, so every report treats
  an installation the same way (the original counted NULL as filtered in one place and
  as not filtered in another).
* ``fuel_clusters`` / ``fuel_nodes``: the environments and nodes of each structure,
  rewritten with it, so the reports group rows instead of parsing JSON documents.
* ``fuel_action_logs``: one row per (master node, nailgun action log id), never
  overwritten; ``action_type``/``action_name`` promoted for the reports. The
  failure-report consumer follows it (on PostgreSQL by its ``txid`` column, added by
  the migration only: see ``downlink.store.follow``).
* ``fuel_oswl_stats``: OpenStack workload snapshots, upserted by (master node, id,
  resource type).
* ``fuel_counts``: the dashboard's counts per report, UTC day, release and key, kept
  in the transactions that write the rows they count (``counts.py``).
* ``fuel_deployments``: per environment (master node, cluster id) with a successful
  deployment, its first one and the failed deployments before it, kept by the
  ``fuelstats_deployments`` consumer (``deployments.py``).
* ``fuel_outbox``: one row per failure notification and channel, unique by failure,
  so a failure is announced once whatever the consumer replays.

Times are epoch seconds as doubles, like every other Downlink table (``ts_reception``:
when the server received the row).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

installations = Table(
    "fuel_installation_structures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("master_node_uid", Text, nullable=False, unique=True),
    Column("structure", JSON, nullable=False),
    Column("creation_date", Double, nullable=False),
    Column("modification_date", Double, nullable=True),
    Column("release", Text, nullable=True, index=True),
    Column("is_filtered", Boolean, nullable=False, index=True),
    Column("clusters_num", Integer, nullable=False),
)

# One row per environment (cluster) of each stored structure, kept in the same
# transaction as the structure: the reports group these instead of parsing JSON.
clusters = Table(
    "fuel_clusters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("installation_id", BigInteger, nullable=False, index=True),
    Column("cluster_id", BigInteger, nullable=True),
    Column("status", Text, nullable=True),
    Column("nodes_num", Integer, nullable=True),
    Column("hypervisor", Text, nullable=True),
    Column("os", Text, nullable=True),
    Column("release_version", Text, nullable=True),
    Column("mode", Text, nullable=True),
    Column("plugins", Integer, nullable=False),
)

# One row per node of each cluster (roles sorted and joined with "+").
nodes = Table(
    "fuel_nodes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("installation_id", BigInteger, nullable=False, index=True),
    Column("cluster_id", BigInteger, nullable=True),
    Column("node_id", BigInteger, nullable=True),
    Column("roles", Text, nullable=False),
    Column("status", Text, nullable=True),
    Column("os", Text, nullable=True),
    Column("manufacturer", Text, nullable=True),
    Column("platform", Text, nullable=True),
    Column("cpu_total", Integer, nullable=True),
    Column("memory_total", BigInteger, nullable=True),
)

action_logs = Table(
    "fuel_action_logs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("master_node_uid", Text, nullable=False),
    Column("external_id", BigInteger, nullable=False),
    Column("body", JSON, nullable=False),
    Column("action_type", Text, nullable=True),
    Column("action_name", Text, nullable=True),
    # Promoted from nailgun_task bodies for the reports: the environment, how the task
    # ended, how long it ran (s), and whether it is a top-level task (no parent).
    Column("cluster_id", BigInteger, nullable=True),
    Column("ended_status", Text, nullable=True),
    Column("duration_s", Double, nullable=True),
    Column("top_level", Boolean, nullable=False),
    Column("ts_reception", Double, nullable=False),
    UniqueConstraint("master_node_uid", "external_id"),
    Index("ix_fuel_action_logs_action_name_action_type", "action_name", "action_type"),
    # Followed by a consumer: SQLite must never reuse the id of a deleted row.
    sqlite_autoincrement=True,
)

oswl_stats = Table(
    "fuel_oswl_stats",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("master_node_uid", Text, nullable=False, index=True),
    Column("external_id", BigInteger, nullable=False, index=True),
    Column("cluster_id", BigInteger, nullable=False),
    Column("created_date", Text, nullable=False, index=True),
    Column("updated_time", Text, nullable=False),
    Column("resource_type", Text, nullable=False, index=True),
    Column("resource_data", JSON, nullable=False),
    Column("resource_checksum", Text, nullable=False),
    Column("version_info", JSON, nullable=True),
    Column("ts_reception", Double, nullable=False),
    UniqueConstraint("master_node_uid", "external_id", "resource_type"),
)

counts = Table(
    "fuel_counts",
    metadata,
    Column("report", Text, primary_key=True),
    Column("release", Text, primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("total", Double, nullable=False),
    # Every release of a report over a range of days: the report, then the day.
    Index("ix_fuel_counts_report_day", "report", "day"),
    # A report over every day (the dashboard without dates): its rows in key order,
    # with every column read, so the GROUP BY is a walk of the index (fuelstats_0003).
    Index("ix_fuel_counts_report_key", "report", "key", "release", "day", "n", "total"),
)

# One row per environment with a successful top-level deployment: the first one's
# external id (``ok_id``) and reception day, and how many failed before it.
deployments = Table(
    "fuel_deployments",
    metadata,
    Column("master_node_uid", Text, primary_key=True),
    Column("cluster_id", BigInteger, primary_key=True),
    Column("ok_id", BigInteger, nullable=False),
    Column("day", Integer, nullable=False),
    Column("fails", Integer, nullable=False),
)

outbox = Table(
    "fuel_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("failure_key", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("action_log_id", BigInteger, nullable=False),
    Column("master_node_uid", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", Text, nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("sent_at", Double, nullable=True),
    UniqueConstraint("failure_key", "channel"),
)
