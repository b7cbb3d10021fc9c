"""Substrate's tables: node connections, their disconnects, and benchmarks.

``node_connections`` and ``benchmarks`` were created by core migration
``0002_substrate`` (it predates source migrations; existing databases sit on that core
chain), so they stay there as history; the names follow the core's naming convention
so that they match. ``node_disconnects`` is this source's own
(``migrations/substrate_0001_connections_consumer.py``).

* ``node_connections``: one row per node seen on one websocket connection
  (``connection``, ``node``), where ``node`` is the V2 envelope ``id`` (``"0"`` for V1
  frames). Derived data: the ``substrate_connections`` consumer keeps it from the
  records (``connections.py``), so it can be deleted and rebuilt by ``downlink
  reprocess``. Records do not reference it by a foreign key: they carry the connection
  in ``attrs``.
* ``node_disconnects``: when a connection closed, written by the websocket endpoint
  as it closes. Primary data (not derived from records): the consumer copies it into
  ``node_connections.disconnected_at``, whichever of the two commits first.
* ``benchmarks``: setups posted to ``POST /benchmarks``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from downlink.store.tables import NAMING_CONVENTION, Id

metadata = MetaData(naming_convention=NAMING_CONVENTION)

node_connections = Table(
    "node_connections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connection", String(32), nullable=False),
    Column("node", String(24), nullable=False),
    Column("ip_addr", Text, nullable=False),
    Column("audit", Boolean, nullable=False),
    Column("connected_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("disconnected_at", Double, nullable=True),
    Column("messages", BigInteger, nullable=False, server_default="0"),
    Column("peer_id", Text, nullable=True),
    Column("name", Text, nullable=True),
    Column("chain", Text, nullable=True),
    Column("version", Text, nullable=True),
    Column("implementation", Text, nullable=True),
    Column("authority", Boolean, nullable=True),
    Column("startup_time", BigInteger, nullable=True),
    Column("genesis_hash", Text, nullable=True),
    # SQL NULL for None (not JSON null), so that the upsert's COALESCE keeps an
    # announced value when a later batch of the connection announces nothing.
    Column("info", JSON(none_as_null=True), nullable=True),
    UniqueConstraint("connection", "node"),
    Index(None, "peer_id", "connected_at"),
    Index(None, "last_seen"),
)

node_disconnects = Table(
    "node_disconnects",
    metadata,
    Column("connection", String(32), primary_key=True),
    Column("audit", Boolean, nullable=False),
    Column("disconnected_at", Double, nullable=False),
    # The purge deletes the expired non-audit ones by time.
    Index(None, "disconnected_at"),
)

benchmarks = Table(
    "benchmarks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("setup", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
)
