"""Clear Linux's tables: crash groups, the "never guilty" list and the dashboard rollups.

Created by the core migrations (``0001`` to ``0012``: they predate source migrations,
and every existing database sits at core head ``0012``); the tables and indexes added
since are this source's own revisions, in ``sources/clearlinux/migrations``
(``clearlinux_0001_…``). The names follow the core's naming convention so that they
match what those migrations created. ``records.guilty_id`` (a core column) refers to
``guilty.id``.
"""

from __future__ import annotations

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
    UniqueConstraint,
)

from downlink.store.tables import NAMING_CONVENTION, Id

metadata = MetaData(naming_convention=NAMING_CONVENTION)

guilty = Table(
    "guilty",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("function", Text, nullable=False),
    Column("module", Text, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("hide", Boolean, nullable=False, server_default="0"),
    UniqueConstraint("function", "module"),
)

guilty_blacklist = Table(
    "guilty_blacklist",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("function", Text, nullable=False),
    Column("module", Text, nullable=False),
    UniqueConstraint("function", "module"),
)

# Every change of the "never guilty" list: who, when and why (the list keeps the frames).
guilty_blacklist_log = Table(
    "guilty_blacklist_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", Double, nullable=False),
    Column("action", String(8), nullable=False),  # "add" or "remove"
    Column("function", Text, nullable=False),
    Column("module", Text, nullable=False),
    Column("who", Text, nullable=False, server_default=""),
    Column("address", Text, nullable=False, server_default=""),
    Column("why", Text, nullable=False, server_default=""),
    Index(None, "function", "module", "id"),
)

# -- dashboard rollups (maintained at ingest by downlink.sources.clearlinux.rollups) -------------
# ``day`` is the UTC day of reception, as whole days since 1970-01-01.

rollup_daily = Table(
    "rollup_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("source", String(32), primary_key=True),
    Column("classification", Text, primary_key=True),
    Column("build", Text, primary_key=True),
    Column("host_type", Text, primary_key=True),
    Column("severity", Integer, primary_key=True, autoincrement=False),
    Column("count", BigInteger, nullable=False),
)

# Narrower copies of rollup_daily: a dashboard reads the smallest one that has every
# column it groups or filters by (downlink.sources.clearlinux.queries.cubes.cube_for).
rollup_class_daily = Table(
    "rollup_class_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("source", String(32), primary_key=True),
    Column("classification", Text, primary_key=True),
    Column("severity", Integer, primary_key=True, autoincrement=False),
    Column("count", BigInteger, nullable=False),
)

rollup_build_daily = Table(
    "rollup_build_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("source", String(32), primary_key=True),
    Column("classification", Text, primary_key=True),
    Column("severity", Integer, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

rollup_platform_daily = Table(
    "rollup_platform_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("source", String(32), primary_key=True),
    Column("classification", Text, primary_key=True),
    Column("severity", Integer, primary_key=True, autoincrement=False),
    Column("host_type", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# grain: "d" (period = day number), "w" (day number of the Monday), "m" (year*100+month).
rollup_machines = Table(
    "rollup_machines",
    metadata,
    Column("grain", String(1), primary_key=True),
    Column("period", Integer, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("machine_id", Text, primary_key=True),
)

rollup_population = Table(
    "rollup_population",
    metadata,
    Column("grain", String(1), primary_key=True),
    Column("period", Integer, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("machines", BigInteger, nullable=False),
)

rollup_guilty = Table(
    "rollup_guilty",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("guilty_id", Id, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    # The crashes view reads a period's rows from this index alone (migration 0009).
    Index(
        "ix_rollup_guilty_by_day", "day", "guilty_id", "build", "count", "first_seen", "last_seen"
    ),
)

rollup_guilty_machines = Table(
    "rollup_guilty_machines",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("guilty_id", Id, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("machine_id", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    # One group's machines of a period (crash group page, top groups) from the index
    # alone, in one contiguous run: the primary key starts with the day, and a
    # (guilty_id, day) index cost one table page per row (migration 0009).
    Index("ix_rollup_guilty_machines_by_group", "guilty_id", "day", "build", "machine_id", "count"),
    # A few machines' rows of one group (their crashes in a period, when the period
    # holds only part of their crashes of the group): migration 0012.
    Index(
        "ix_rollup_guilty_machines_by_machine", "guilty_id", "machine_id", "build", "day", "count"
    ),
)

# Every crash of a group per (build, machine), whatever the day: the sum of its
# rollup_guilty_machines rows and the first and last day among them. The crash group
# page lists machines "most crashes first" from it without aggregating a long period's
# rows per request (downlink.sources.clearlinux.queries.crashes.guilty_machines): an all-time count
# bounds the machine's count in any period, and equals it when the machine's first and
# last days lie inside the period (migration 0012).
rollup_guilty_machine_totals = Table(
    "rollup_guilty_machine_totals",
    metadata,
    Column("guilty_id", Id, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("machine_id", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_day", Integer, nullable=False),
    Column("last_day", Integer, nullable=False),
    Index(
        "ix_rollup_guilty_machine_totals_by_count",
        "guilty_id",
        "count",
        "machine_id",
        "build",
        "first_day",
        "last_day",
    ),
)

# HyperLogLog sketches of the machines of each crash group per day, and per day and
# build (downlink.store.sketch): distinct machines over long periods without a
# COUNT(DISTINCT) over one rollup_guilty_machines row per crash.
rollup_guilty_sketch = Table(
    "rollup_guilty_sketch",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("guilty_id", Id, primary_key=True, autoincrement=False),
    Column("registers", LargeBinary, nullable=False),
)

rollup_guilty_build_sketch = Table(
    "rollup_guilty_build_sketch",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("guilty_id", Id, primary_key=True, autoincrement=False),
    Column("build", Text, primary_key=True),
    Column("registers", LargeBinary, nullable=False),
)

# Machine checks and thermal events (every ``org.clearlinux/mce/`` class) per day,
# class, build and MCE status. A status is sender-controlled text, as many as there are
# records at worst, so no view reads a period of these rows: the MCE view reads the
# period's counts from rollup_mce_daily, ranks statuses from their totals and reads
# here only the rows of the few statuses it weighs (this index; migration
# clearlinux_0001 replaced the day-led one).
rollup_mce = Table(
    "rollup_mce",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("classification", Text, primary_key=True),
    Column("build", Text, primary_key=True),
    Column("status", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Index("ix_rollup_mce_by_status", "status", "day", "classification", "build", "count"),
)

# rollup_mce without the status: per day, class and build, what the MCE view's weekly,
# class and build charts and its period total read (clearlinux_0001), whatever the
# number of statuses.
rollup_mce_daily = Table(
    "rollup_mce_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("classification", Text, primary_key=True),
    Column("build", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Every MCE event (the four MCE classes, not thermal) of a status whatever the day, and
# the first and last day among them; per build in rollup_mce_build_statuses. The MCE
# view's status list ranks a period's statuses from these all-time counts (an upper
# bound of any period's count, exact when the status's days lie inside the period:
# downlink.sources.clearlinux.queries.mce_statuses), read by count from the index
# (clearlinux_0001).
rollup_mce_statuses = Table(
    "rollup_mce_statuses",
    metadata,
    Column("status", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_day", Integer, nullable=False),
    Column("last_day", Integer, nullable=False),
    Index("ix_rollup_mce_statuses_by_count", "count", "status", "first_day", "last_day"),
)

rollup_mce_build_statuses = Table(
    "rollup_mce_build_statuses",
    metadata,
    Column("build", Text, primary_key=True),
    Column("status", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_day", Integer, nullable=False),
    Column("last_day", Integer, nullable=False),
    Index(
        "ix_rollup_mce_build_statuses_by_count",
        "build",
        "count",
        "status",
        "first_day",
        "last_day",
    ),
)

# week = day number of the Monday of the week.
rollup_mce_machines = Table(
    "rollup_mce_machines",
    metadata,
    Column("week", Integer, primary_key=True, autoincrement=False),
    Column("classification", Text, primary_key=True),
    Column("build", Text, primary_key=True),
    Column("machine_id", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    # Top MCE machines of a period: totals per machine read in machine order from this
    # covering index instead of sorting every row of the period (670 -> 45 ms on SQLite
    # at 10M records).
    Index(
        "ix_rollup_mce_machines_by_machine",
        "machine_id",
        "week",
        "classification",
        "build",
        "count",
    ),
)

# MCE events (the four MCE classes, not thermal) per machine and week, every build
# together: the MCE view's top machines of a period sum one row per (machine, week)
# instead of one per (machine, week, class, build), several times fewer (migration 0017).
rollup_mce_machine_weeks = Table(
    "rollup_mce_machine_weeks",
    metadata,
    Column("week", Integer, primary_key=True, autoincrement=False),
    Column("machine_id", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Index("ix_rollup_mce_machine_weeks_by_machine", "machine_id", "week", "count"),
)
