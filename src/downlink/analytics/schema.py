"""ClickHouse schema management: versioned DDL applied when a server starts.

ClickHouse has no transactions and no Alembic, so the rules are OONI's (reference
A5): tables are created if missing; a column is only ever added, with ``ADD COLUMN IF
NOT EXISTS`` (a rename is done in steps: add, write both, backfill, read the new one,
drop the old); anything else (a new sort key, a changed type) is a *rebuild*: the
declaration's ``rebuild`` number goes up, and the next start fills ``<table>_rebuild``
with the new definition from the old table and swaps the two atomically with
``EXCHANGE TABLES``. The table ``downlink_schema`` remembers, per table, the rebuild
applied and the TTL clause in force, so a start that changes nothing runs no ALTER.

Every table is a ``ReplacingMergeTree(version)`` whose sort key identifies one record
(shipping it again replaces it), partitioned by month, with a TTL from the same
retention setting as the SQL store's purge (0 keeps everything).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from downlink.analytics.client import Analytics
from downlink.sources.base import AnalyticsTable

SCHEMA_TABLE = "downlink_schema"


@dataclass(frozen=True)
class Planned:
    """A table to maintain, with the TTL clause its retention gives (None: keep all)."""

    table: AnalyticsTable
    ttl: str | None


def seconds_of(column: str) -> str:
    """A ClickHouse DateTime from an epoch-seconds column."""
    return f"toDateTime(toUInt32(greatest({column}, 0)))"


def ttl_clause(table: AnalyticsTable, hours: float) -> str | None:
    """``TTL …`` for a retention in hours (None when it keeps everything)."""
    if hours <= 0:
        return None
    clause = f"{seconds_of(table.ts_column)} + INTERVAL {round(hours * 3600)} SECOND DELETE"
    if table.ttl_where:
        clause += f" WHERE {table.ttl_where}"
    return clause


def create_sql(db: str, name: str, table: AnalyticsTable, ttl: str | None) -> str:
    """The CREATE TABLE statement of a declaration."""
    columns = ",\n  ".join(f"{col} {kind}" for col, kind in table.columns)
    sql = (
        f"CREATE TABLE IF NOT EXISTS {db}.{name} (\n  {columns}\n)\n"
        f"ENGINE = ReplacingMergeTree({table.version})\n"
        f"PARTITION BY toYYYYMM({seconds_of(table.time_column)})\n"
        f"ORDER BY ({', '.join(table.order_by)})"
    )
    if ttl:
        sql += f"\nTTL {ttl}"
    return sql


def _state(ch: Analytics) -> dict[str, tuple[int, str]]:
    ch.command(
        f"CREATE TABLE IF NOT EXISTS {ch.table(SCHEMA_TABLE)} "
        "(table String, rebuild UInt32, ttl String, applied_at Float64) "
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY table"
    )
    rows = ch.query(f"SELECT table, rebuild, ttl FROM {ch.table(SCHEMA_TABLE)} FINAL")
    return {str(t): (int(r), str(ttl)) for t, r, ttl in rows}


def _remember(ch: Analytics, table: str, rebuild: int, ttl: str | None) -> None:
    ch.insert(SCHEMA_TABLE, [[table, rebuild, ttl or "", time.time()]],
              ["table", "rebuild", "ttl", "applied_at"])


def _existing(ch: Analytics, name: str) -> list[str]:
    rows = ch.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        " ORDER BY position",
        {"db": ch.database, "t": name},
    )
    return [str(r[0]) for r in rows]


def _rebuild(ch: Analytics, plan: Planned, existing: Sequence[str]) -> None:
    """Refill the table with its new definition and swap it in, atomically."""
    table = plan.table
    fresh = f"{table.name}_rebuild"
    ch.command(f"DROP TABLE IF EXISTS {ch.table(fresh)}")
    ch.command(create_sql(ch.database, fresh, table, plan.ttl))
    kept = [c for c, _ in table.columns if c in existing]
    cols = ", ".join(kept)
    ch.command(f"INSERT INTO {ch.table(fresh)} ({cols}) SELECT {cols} FROM {ch.table(table.name)}")
    ch.command(f"EXCHANGE TABLES {ch.table(table.name)} AND {ch.table(fresh)}")
    ch.command(f"DROP TABLE {ch.table(fresh)}")


def apply(ch: Analytics, plans: Sequence[Planned]) -> list[str]:
    """Bring every table to its declaration; returns what was done (for the log)."""
    done: list[str] = []
    state = _state(ch)
    for plan in plans:
        table = plan.table
        applied = state.get(table.name)
        existing = _existing(ch, table.name)
        if not existing:
            ch.command(create_sql(ch.database, table.name, table, plan.ttl))
            done.append(f"created {table.name}")
        elif applied is not None and applied[0] < table.rebuild:
            _rebuild(ch, plan, existing)
            done.append(f"rebuilt {table.name} ({applied[0]} -> {table.rebuild})")
        else:
            for col, kind in table.columns:
                if col not in existing:
                    ch.command(
                        f"ALTER TABLE {ch.table(table.name)} ADD COLUMN IF NOT EXISTS {col} {kind}"
                    )
                    done.append(f"added {table.name}.{col}")
            known_ttl = None if applied is None else applied[1]
            if known_ttl != (plan.ttl or "") and (known_ttl or plan.ttl):
                if plan.ttl:
                    ch.command(f"ALTER TABLE {ch.table(table.name)} MODIFY TTL {plan.ttl}")
                else:
                    ch.command(f"ALTER TABLE {ch.table(table.name)} REMOVE TTL")
                done.append(f"retention of {table.name}: {plan.ttl or 'keep all'}")
        if applied != (table.rebuild, plan.ttl or ""):
            _remember(ch, table.name, table.rebuild, plan.ttl)
    return done
