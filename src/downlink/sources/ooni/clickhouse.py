"""OONI in the ClickHouse analytics store: the ``ooni_fastpath`` table and its reads.

Like OONI's own ``fastpath`` table (reference A5): one row per measurement, a
``ReplacingMergeTree(update_time)`` whose key ends with the measurement_uid, so a
measurement shipped twice (a replay, a re-scoring) is one row. The shipper follows
the measurement log and ships each measurement's scored row: the one the fastpath
consumer wrote, or, when that consumer is still behind, the same row scored here
(:func:`downlink.sources.ooni.fastpath.build_row`, same fingerprints).

The reads are the SQL ones' twins: the same parsed query (:mod:`.search`,
:mod:`.aggregation`), its SQLAlchemy conditions translated by
:mod:`downlink.analytics.where`, the same folding of the grouped counts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, Double, Integer, select

from downlink.analytics.client import Analytics
from downlink.analytics.where import translate
from downlink.sources.base import AnalyticsTable, LogRecord
from downlink.sources.ooni import aggregation, fastpath, fingerprint_store, search
from downlink.sources.ooni.reads import Reads
from downlink.sources.ooni.tables import fastpath as fastpath_table


def _kind(column: Any) -> str:
    t = column.type
    if isinstance(t, Boolean):
        kind = "Bool"
    elif isinstance(t, BigInteger):
        kind = "Int64"
    elif isinstance(t, Integer):
        kind = "Int32"
    elif isinstance(t, Double):
        kind = "Float64"
    else:
        kind = "String"
    if column.name in ("probe_cc", "test_name", "platform", "software_name", "blocking_type"):
        kind = "LowCardinality(String)"
    return f"Nullable({kind})" if column.nullable else kind


COLUMNS: tuple[tuple[str, str], ...] = tuple((c.name, _kind(c)) for c in fastpath_table.columns)
_NAMES = tuple(name for name, _ in COLUMNS)


def _rows(conn: Connection, batch: Sequence[LogRecord]) -> list[Sequence[Any]]:
    uids = [r.row["measurement_uid"] for r in batch]
    found = {
        row["measurement_uid"]: dict(row)
        for row in conn.execute(
            select(fastpath_table).where(fastpath_table.c.measurement_uid.in_(uids))
        ).mappings()
    }
    fps = None
    now = time.time()
    out: list[Sequence[Any]] = []
    for record in batch:
        uid = record.row["measurement_uid"]
        row = found.get(uid)
        if row is None:  # the fastpath consumer is behind: score it the same way
            fps = fps or fingerprint_store.current(conn)
            body = bytes(record.row["body"])
            scored = fastpath.build_row(body, uid, record.row["report_id"], fps)
            if scored is None:
                continue
            row = {**scored, "update_time": now, "ts_reception": record.ts}
        out.append([row[name] for name in _NAMES])
    return out


TABLE = AnalyticsTable(
    name="ooni_fastpath",
    follows="ooni_measurements",
    columns=COLUMNS,
    order_by=("probe_cc", "test_name", "measurement_uid"),
    version="update_time",
    time_column="ts_reception",
    rows=_rows,
    batch_max=5000,
)


def run_search(ch: Analytics, q: search.Query) -> list[dict[str, Any]]:
    """One page of ``/api/v1/measurements`` (the twin of :func:`search.run`)."""
    where, params = translate(search.conditions(q))
    order = "DESC" if q.order_desc else "ASC"
    sql = (
        f"SELECT {', '.join(_NAMES)} FROM {ch.table(TABLE.name)} FINAL{where} "
        f"ORDER BY measurement_start_time {order}, measurement_uid {order} "
        f"LIMIT {int(q.limit)}"
    )
    if q.cursor is None and q.offset:
        sql += f" OFFSET {int(q.offset)}"
    return ch.query_dicts(sql, params)


_COUNTS = (
    "countIf(anomaly AND NOT confirmed AND NOT msm_failure)",
    "countIf(confirmed AND NOT msm_failure)",
    "countIf(msm_failure)",
    "countIf(NOT anomaly AND NOT confirmed AND NOT msm_failure)",
    "count()",
)


def run_aggregation(ch: Analytics, agg: aggregation.Aggregation) -> list[dict[str, Any]]:
    """``/api/v1/aggregation`` (the twin of :func:`aggregation.run`)."""
    where, params = translate(agg.filters)
    columns = []
    for axis in agg.axes:
        if axis == "measurement_start_day":
            step = aggregation.bucket_seconds(agg.grain)
            columns.append(f"intDiv(toInt64(measurement_start_time), {step})")
        else:
            columns.append(axis)
    sql = f"SELECT {', '.join([*columns, *_COUNTS])} FROM {ch.table(TABLE.name)} FINAL{where}"
    if columns:
        sql += f" GROUP BY {', '.join(columns)}"
    return aggregation.fold(agg, ch.query(sql, params))


def reads(ch: Analytics) -> Reads:
    """The OONI reads on ClickHouse (``Source.analytics_reads``)."""
    return Reads(ch.read, run_search, run_aggregation)
