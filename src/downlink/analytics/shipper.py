"""Shippers: consumers that copy committed rows into the analytics store.

One consumer per :class:`~downlink.sources.base.AnalyticsTable`, named
``analytics_<table>``, following the table's SQL table with the core's consumer
machinery (persisted cursor, lag gauges, ``/consumers``, ``downlink reprocess --source
analytics`` for a backfill). Its ``handle`` maps the batch to rows and inserts them
into ClickHouse as one block, inside the transaction that moves the cursor; so:

* a crash after the insert but before the commit ships the batch again after the
  restart; the table is a ReplacingMergeTree keyed by the record, so the second copy
  replaces the first (``FINAL`` reads, and merges, see one row per record);
* ClickHouse down: the insert raises, the batch rolls back and the consumer retries
  with backoff while ingestion goes on (its lag grows on ``/consumers``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from downlink.analytics import records, schema
from downlink.analytics.client import Analytics, connect
from downlink.settings import Settings
from downlink.sources.base import AnalyticsTable, Consumer, LogRecord
from downlink.sources.registry import Sources

log = logging.getLogger(__name__)

# The ``--source`` of ``downlink reprocess`` that names the shippers.
SOURCE = "analytics"


def consumer_name(table: AnalyticsTable) -> str:
    """The shipper consumer of a table."""
    return f"analytics_{table.name}"


def plans(settings: Settings, sources: Sources) -> list[schema.Planned]:
    """The core's tables and every source's, each with the TTL of its retention."""
    out = [schema.Planned(records.TABLE, records.ttl(settings, sources))]
    for source in sources:
        hours = 0.0
        if source.retention is not None:
            hours = float(settings.sources[source.name][source.retention])
        out.extend(schema.Planned(t, schema.ttl_clause(t, hours)) for t in source.analytics_tables)
    return out


@dataclass
class Shipping:
    """The analytics store of a server: its tables, shippers and reads."""

    ch: Analytics
    planned: list[schema.Planned]
    reads: dict[str, Any]

    def __post_init__(self) -> None:
        self._ready = False
        self._lock = threading.Lock()

    def ensure_schema(self) -> None:
        """Apply the DDL once per process (again after a failure)."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                for line in schema.apply(self.ch, self.planned):
                    log.info("analytics schema: %s", line)
                self._ready = True

    def consumers(self) -> list[Consumer]:
        """One shipper per table."""
        return [self._shipper(p.table) for p in self.planned]

    def _shipper(self, table: AnalyticsTable) -> Consumer:
        columns = [name for name, _ in table.columns]

        def handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
            self.ensure_schema()
            self.ch.insert(table.name, table.rows(conn, batch), columns)

        return Consumer(
            name=consumer_name(table),
            follows=table.follows,
            handle=handle,
            batch_max=table.batch_max,
            ts_column=table.ts_column,
            linger_s=table.linger_s,
        )


def shipping(settings: Settings) -> Shipping | None:
    """The analytics store the settings configure (None without DOWNLINK_ANALYTICS_URL)."""
    if not settings.analytics_url:
        return None
    ch = connect(settings.analytics_url)
    sources = settings.registry
    reads: dict[str, Any] = {
        records.READS_KEY: records.clickhouse_reads(ch),
    }
    for source in sources:
        if source.analytics_reads is not None:
            reads[source.name] = source.analytics_reads(ch)
    return Shipping(ch, plans(settings, sources), reads)


def shippers(settings: Settings) -> list[tuple[str, Consumer]]:
    """The shipper consumers of these settings, as ``(source label, consumer)``."""
    found = shipping(settings)
    return [] if found is None else [(SOURCE, c) for c in found.consumers()]
