"""SQLAlchemy Core schema of the core: the record log, jobs and consumers' cursors.

``records`` is the one table every wire protocol stores into. The Clear Linux header
fields have their own columns (they are what the query API filters on; the record log
grew out of that protocol and existing databases keep its columns); anything a source
has beyond them goes into ``attrs`` as JSON. ``source`` says which protocol a record
came through. A source's own tables live in its folder (``sources/<name>/tables.py``).
Migrations in ``store/migrations`` create exactly this schema (and, as history, the
tables of the sources that predate source migrations).

``records.guilty_id`` refers to ``guilty.id`` by name: that table is Clear Linux's
(``downlink.sources.clearlinux.tables``), created by core migration 0001 like this one.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Constraint and index names: a source whose tables the core migrations created (Clear
# Linux's) declares them with the same convention so that the names match.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The condition of the event id index: a lookup repeats it word for word, so that
# SQLite (which matches a partial index's terms as written) may use the index.
HAS_EVENT_ID = "event_id <> ''"

records = Table(
    "records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("record_version", Integer, nullable=False),
    Column("classification", Text, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("machine_id", Text, nullable=False),
    Column("ts_capture", Double, nullable=False),
    Column("ts_reception", Double, nullable=False),
    Column("arch", Text, nullable=False),
    Column("host_type", Text, nullable=False),
    Column("build", Text, nullable=False),
    Column("kernel_version", Text, nullable=False),
    Column("payload_version", Integer, nullable=False),
    Column("system_name", Text, nullable=False),
    Column("board_name", Text, nullable=False),
    Column("cpu_model", Text, nullable=False),
    Column("bios_version", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("external", Boolean, nullable=False),
    Column("tid", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("attrs", JSON, nullable=True),
    # Retries of the same record (same machine, event id, capture time, class) share
    # this key, so a client that re-sends after a lost answer creates no duplicate.
    Column("dedup_key", String(64), nullable=True, unique=True),
    Column("guilty_id", Id, ForeignKey("guilty.id"), nullable=True),
    # True when the record's sender id did not match its binding and the source's rule
    # is to store it flagged (downlink.security.senders): kept, shown with the flag,
    # left out of dashboards and reports. NULL otherwise (migration 0015_senders).
    Column("sender_flagged", Boolean, nullable=True),
    Index(None, "classification", "ts_reception"),
    # Newest-first lists filtered by class (the API's default order) walk this one.
    Index(None, "classification", "id"),
    Index(None, "ts_reception"),
    Index(None, "build"),
    Index(None, "machine_id"),
    Index(None, "ts_capture"),
    # A crash group's newest records (backtraces page): the group and the order in one
    # index, so PostgreSQL cannot prefer walking the primary key backwards until 50
    # of the group turn up (SQLite's (guilty_id) index had the rowid in it already).
    Index(None, "guilty_id", "id"),
    Index(None, "source", "id"),
    # One source's recent records (nodes page, retention) through one index matching
    # every condition, whatever the statistics say of the sources' sizes (migration 0009).
    Index(None, "source", "ts_reception"),
    # A record by its event id (the search box), only records that have one (migration
    # 0025_event_id_index; a lookup repeats the condition: store/queries/search.py).
    Index(
        "ix_records_event_id",
        "event_id",
        sqlite_where=text(HAS_EVENT_ID),
        postgresql_where=text(HAS_EVENT_ID),
    ),
)

# -- background jobs (downlink.store.jobs, migration 0006_jobs) ------------------------
# One row per job: ``kind`` says what it does ("regroup": regroup the crash records
# after a "never guilty" edit; "reprocess": replay a range through a consumer),
# ``params`` what it needs (the consumer, a date range, filters, the job's lane).
# ``cursor`` is the last record id done, so a job resumes where it stopped; ``owner``
# is the token of the claim that runs it, ``heartbeat`` when that claim last
# committed a chunk (a stale heartbeat lets another process take
# the job over).
jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("restart", Boolean, nullable=False, server_default="0"),
    Column("params", JSON, nullable=True),
    Column("owner", String(32), nullable=True),
    Column("cursor", BigInteger, nullable=False, server_default="0"),
    Column("done", BigInteger, nullable=False, server_default="0"),
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("changed", BigInteger, nullable=False, server_default="0"),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("heartbeat", Double, nullable=True),
    Column("message", Text, nullable=True),
    Index(None, "kind", "state"),
)

# -- post-ack consumers (downlink.store.cursors, migration 0009_consumers) --------------
# One row per consumer: where it stands in the table it follows. ``txid``/``last_id``
# is its cursor in the table's commit order (txid is the PostgreSQL transaction id of
# the last row handled, 0 on SQLite, where ids are committed in order); ``handled``
# counts rows, ``last_ts`` is the reception time of the last one. A failing consumer
# keeps its cursor and carries ``error``, ``failures`` and ``retry_at`` (backoff).
consumers = Table(
    "consumers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("follows", String(64), nullable=False),
    Column("txid", BigInteger, nullable=False, server_default="0"),
    Column("last_id", BigInteger, nullable=False, server_default="0"),
    Column("handled", BigInteger, nullable=False, server_default="0"),
    Column("last_ts", Double, nullable=True),
    Column("updated_at", Double, nullable=True),
    Column("error", Text, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("retry_at", Double, nullable=True),
)

# -- the raw archive's open days (downlink.archive, 0020_archive_days) ---------------------
# One row per (archive, UTC day): rows the archive consumer has staged (written to the
# day's open segments, counted in the transaction that moves its cursor, so exactly
# once), rows in the day's closed files, and the lease of the process closing it.
archive_days = Table(
    "archive_days",
    metadata,
    Column("archive", String(128), primary_key=True),
    Column("day", String(8), primary_key=True),
    Column("staged", BigInteger, nullable=False, server_default="0"),
    Column("closed", BigInteger, nullable=False, server_default="0"),
    Column("closed_at", Double, nullable=True),
    Column("claimed_until", Double, nullable=True),
    Column("error", Text, nullable=True),
)

# -- sources' periodic background tasks (downlink.pipeline.tasks, 0026_tasks) -------------
# One row per task (``Source.tasks``): the lease of the process running it (``owner``
# until ``claimed_until``; every write of a run renews it, so only the holder commits),
# the last successful run and what it did, and the last failure, shown on /consumers.
tasks = Table(
    "tasks",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("owner", String(64), nullable=True),
    Column("claimed_until", Double, nullable=True),
    Column("ran_at", Double, nullable=True),
    Column("done", BigInteger, nullable=False, server_default="0"),
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("error", Text, nullable=True),
    Column("error_at", Double, nullable=True),
)

# -- sender bindings: trust on first use (downlink.security.senders, 0015_senders) -----
# One row per (source, sender id) bound by its first accepted post: the hash of the
# secret returned to it, the network it came from (address masked to the configured
# prefix) and its client certificate's fingerprint when the proxy passed one.
# ``secret_seen``: it presented the secret once, so every later post must. Counters
# and the last mismatch feed the senders page and ``downlink senders list``.
senders = Table(
    "senders",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("sender_id", Text, primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("secret_seen", Boolean, nullable=False, server_default="0"),
    Column("network", Text, nullable=False, server_default=""),
    Column("cert", Text, nullable=True),
    Column("bound_at", Double, nullable=False),
    Column("refused", BigInteger, nullable=False, server_default="0"),
    Column("flagged", BigInteger, nullable=False, server_default="0"),
    Column("last_mismatch_at", Double, nullable=True),
    Column("last_mismatch_from", Text, nullable=True),
    Column("last_mismatch_reason", Text, nullable=True),
    # The page lists the senders with mismatches, most recent first.
    Index(None, "last_mismatch_at"),
)

# -- changed sender bindings (downlink.security.senders, 0024_sender_changes) -----------
# What changed a binding after it was made (a re-bind, a forget, a sender presenting its
# secret for the first time) appends the ids here, ``seq`` numbering the changes in
# commit order; each server process reads the entries after the last one it saw every
# second while posts arrive, and drops those ids from its cache of bindings.
sender_changes = Table(
    "sender_changes",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("source", String(32), primary_key=True),
    Column("sender_id", Text, primary_key=True),
    Column("changed_at", Double, nullable=False),
)
