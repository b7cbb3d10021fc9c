"""The core's ``records`` table in the analytics store, and the reads of ``/api/records``.

The ClickHouse twins of :func:`downlink.store.queries.records.record_sizes` and
:func:`~downlink.store.queries.records.records_by_ids` take the
:class:`~downlink.analytics.client.Analytics` where those take a SQL connection and
return the same rows: :class:`RecordReads` bundles either pair with the runner that
calls it, so ``api/records.py`` picks the store once per request and has no branch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from downlink.analytics.client import Analytics
from downlink.analytics.schema import ttl_clause
from downlink.settings import Settings
from downlink.sources.base import AnalyticsTable, LogRecord
from downlink.sources.registry import Sources
from downlink.store.queries.patterns import is_pattern, like_pattern
from downlink.store.queries.records import ROW_OVERHEAD, RecordFilter

Row = dict[str, Any]
READS_KEY = "records"

# (column, ClickHouse type), in the order of the SQL table.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "UInt64"),
    ("source", "LowCardinality(String)"),
    ("record_version", "Int32"),
    ("classification", "String"),
    ("severity", "Int32"),
    ("machine_id", "String"),
    ("ts_capture", "Float64"),
    ("ts_reception", "Float64"),
    ("arch", "String"),
    ("host_type", "String"),
    ("build", "String"),
    ("kernel_version", "String"),
    ("payload_version", "Int32"),
    ("system_name", "String"),
    ("board_name", "String"),
    ("cpu_model", "String"),
    ("bios_version", "String"),
    ("event_id", "String"),
    ("external", "Bool"),
    ("tid", "String"),
    ("payload", "String"),
    ("attrs", "Nullable(String)"),
    ("guilty_id", "Nullable(UInt64)"),
    ("audit", "Bool"),
    ("shipped_at", "Float64"),
    # Added after the first release (columns are only ever added, at the end): rows
    # shipped before have NULL until a backfill (downlink reprocess --source analytics).
    ("sender_flagged", "Nullable(Bool)"),
)
# Those read back as the SQL row has them (audit and shipped_at are ClickHouse's own).
_SQL_COLUMNS = tuple(c for c, _ in COLUMNS if c not in ("audit", "shipped_at"))
_NAMES = tuple(c for c, _ in COLUMNS)


def _rows(conn: Connection, batch: Sequence[LogRecord]) -> list[Sequence[Any]]:
    del conn
    now = time.time()
    out: list[Sequence[Any]] = []
    for record in batch:
        r = record.row
        attrs = r.get("attrs")
        audit = bool(isinstance(attrs, dict) and attrs.get("audit"))
        values = {c: r.get(c) for c in _SQL_COLUMNS}
        values.update(
            attrs=None if attrs is None else json.dumps(attrs),
            sender_flagged=True if r.get("sender_flagged") else None,
            audit=audit,
            shipped_at=now,
        )
        out.append([values[c] for c in _NAMES])
    return out


TABLE = AnalyticsTable(
    name="records",
    follows="records",
    columns=COLUMNS,
    order_by=("id",),
    version="shipped_at",
    time_column="ts_reception",
    rows=_rows,
)


def ttl(settings: Settings, sources: Sources) -> str | None:
    """The TTL of ``records``: one rule per source whose purge deletes some of its
    records (``Source.records_expiry`` rows, after its ``retention``), as in SQL."""
    rules = []
    for source in sources:
        if source.records_expiry is None or source.retention is None:
            continue
        hours = float(settings.sources[source.name][source.retention])
        rule = ttl_clause(replace(TABLE, ttl_where=source.records_expiry), hours)
        if rule is not None:
            rules.append(rule)
    return ", ".join(rules) or None


def _where(f: RecordFilter) -> tuple[str, dict[str, Any]]:
    terms: list[str] = []
    params: dict[str, Any] = {}

    def add(sql: str, **values: Any) -> None:
        terms.append(sql)
        params.update(values)

    if f.classification is not None:
        if is_pattern(f.classification):
            add("classification LIKE {cls:String}", cls=like_pattern(f.classification))
        else:
            add("classification = {cls:String}", cls=f.classification)
    for name, value, kind in (
        ("severity", f.severity, "Int32"),
        ("machine_id", f.machine_id, "String"),
        ("build", f.build, "String"),
        ("source", f.source, "String"),
        ("host_type", f.host_type, "String"),
        ("arch", f.arch, "String"),
        ("system_name", f.system_name, "String"),
    ):
        if value is not None:
            add(f"{name} = {{{name}:{kind}}}", **{name: value})
    if f.payload_contains:
        add("position(payload, {needle:String}) > 0", needle=f.payload_contains)
    if f.received_after is not None:
        add("ts_reception > {ra:Float64}", ra=f.received_after)
    if f.received_before is not None:
        add("ts_reception <= {rb:Float64}", rb=f.received_before)
    if f.captured_after is not None:
        add("ts_capture > {ca:Float64}", ca=f.captured_after)
    if f.from_id is not None:
        add("id >= {fid:UInt64}", fid=f.from_id)
    if f.before_id is not None:
        add("id < {bid:UInt64}", bid=f.before_id)
    return (" WHERE " + " AND ".join(terms)) if terms else "", params


def record_sizes(
    ch: Analytics, f: RecordFilter, limit: int, *, oldest_first: bool = False
) -> list[tuple[int, int]]:
    """``(id, bytes)`` of up to ``limit`` matching records, newest first by default."""
    where, params = _where(f)
    order = "ASC" if oldest_first else "DESC"
    rows = ch.query(
        f"SELECT id, length(payload) + length(ifNull(attrs, '')) + {ROW_OVERHEAD} "
        f"FROM {ch.table(TABLE.name)} FINAL{where} ORDER BY id {order} LIMIT {int(limit)}",
        params,
    )
    return [(int(i), int(n)) for i, n in rows]


def records_by_ids(
    ch: Analytics, ids: Sequence[int], *, oldest_first: bool = False
) -> list[Row]:
    """The records with these ids (those still there), newest first by default."""
    if not ids:
        return []
    order = "ASC" if oldest_first else "DESC"
    rows = ch.query_dicts(
        f"SELECT {', '.join(_SQL_COLUMNS)} FROM {ch.table(TABLE.name)} FINAL "
        f"WHERE id IN {{ids:Array(UInt64)}} ORDER BY id {order}",
        {"ids": list(ids)},
    )
    for row in rows:
        row["attrs"] = None if row["attrs"] is None else json.loads(row["attrs"])
    return rows


@dataclass(frozen=True)
class RecordReads:
    """The reads of ``/api/records`` on one store: ``read(fn, *args)`` runs ``fn(handle,
    *args)`` off the event loop; ``sizes`` and ``by_ids`` are the two questions."""

    read: Callable[..., Awaitable[Any]]
    sizes: Callable[..., list[tuple[int, int]]]
    by_ids: Callable[..., list[Row]]


def clickhouse_reads(ch: Analytics) -> RecordReads:
    """The ClickHouse implementation."""
    return RecordReads(ch.read, record_sizes, records_by_ids)
