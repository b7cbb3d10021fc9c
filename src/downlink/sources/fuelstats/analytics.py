"""Fuel-stats in the ClickHouse analytics store: ``fuel_action_logs`` and its reads.

The shipper ``analytics_fuel_action_logs`` follows the SQL ``fuel_action_logs`` and
copies each stored action log (never overwritten there) into a
``ReplacingMergeTree(shipped_at)`` keyed by ``(master_node_uid, external_id)``, the
SQL table's unique key: a replay (crash before the cursor's commit, ``downlink
reprocess --source analytics``) replaces a row, never adds one. The body is kept as
its JSON text. Fuel-stats has no retention setting (its SQL rows are kept forever),
so the table has no TTL.

Two reads scan raw action logs and have a ClickHouse twin here, taking the same
arguments and returning the same rows as the SQL ones:

* :func:`action_logs_of`: a master node's logs, paged (``/api/v1/json/action_logs``);
* :func:`verify_networks`: the latest ``verify_networks`` status per environment in
  a window (the ``clusters`` CSV export's last column).

The count-based reports (``/fuel``, the report API) stay on the SQL store's
``fuel_counts`` (docs/clickhouse.md says why).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from downlink.analytics.client import Analytics
from downlink.sources.base import AnalyticsTable, LogRecord
from downlink.sources.fuelstats import exports, queries
from downlink.sources.fuelstats.reads import Reads

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "UInt64"),
    ("master_node_uid", "String"),
    ("external_id", "Int64"),
    ("body", "String"),
    ("action_type", "LowCardinality(Nullable(String))"),
    ("action_name", "LowCardinality(Nullable(String))"),
    ("cluster_id", "Nullable(Int64)"),
    ("ended_status", "LowCardinality(Nullable(String))"),
    ("duration_s", "Nullable(Float64)"),
    ("top_level", "Bool"),
    ("ts_reception", "Float64"),
    ("shipped_at", "Float64"),
)
_NAMES = tuple(name for name, _ in COLUMNS)
_SQL_NAMES = tuple(name for name in _NAMES if name != "shipped_at")


def _body(value: Any) -> str:
    """The JSON text of a stored body (a dict on both SQL stores; text if a driver
    hands it over undecoded)."""
    return value if isinstance(value, str) else json.dumps(value)


def _rows(conn: Connection, batch: Sequence[LogRecord]) -> list[Sequence[Any]]:
    del conn
    now = time.time()
    out: list[Sequence[Any]] = []
    for record in batch:
        row = record.row
        values = {name: row[name] for name in _SQL_NAMES}
        values.update(body=_body(row["body"]), top_level=bool(row["top_level"]), shipped_at=now)
        out.append([values[name] for name in _NAMES])
    return out


TABLE = AnalyticsTable(
    name="fuel_action_logs",
    follows="fuel_action_logs",
    columns=COLUMNS,
    order_by=("master_node_uid", "external_id"),
    version="shipped_at",
    time_column="ts_reception",
    rows=_rows,
)


def action_logs_of(ch: Analytics, uid: str, limit: int, offset: int) -> dict[str, Any]:
    """The twin of :func:`.queries.action_logs_of`: a master node's logs, oldest first."""
    table = ch.table(TABLE.name)
    params = {"uid": uid}
    total = ch.query(
        f"SELECT count() FROM {table} FINAL WHERE master_node_uid = {{uid:String}}", params
    )[0][0]
    rows = ch.query(
        "SELECT id, master_node_uid, external_id, body, action_type, action_name "
        f"FROM {table} FINAL WHERE master_node_uid = {{uid:String}} "
        f"ORDER BY external_id LIMIT {int(limit)} OFFSET {int(offset)}",
        params,
    )
    objs = [
        {
            "id": int(rid),
            "master_node_uid": str(node),
            "external_id": int(ext),
            "body": json.loads(body),
            "action_type": kind,
            "action_name": name,
        }
        for rid, node, ext, body, kind, name in rows
    ]
    return queries.paged(int(total), objs, limit, offset)


def verify_networks(ch: Analytics, win: exports.Window) -> dict[tuple[str, Any], str]:
    """The twin of :func:`.exports.verify_networks`: the same rows, filtered here."""
    rows = ch.query(
        f"SELECT master_node_uid, external_id, body FROM {ch.table(TABLE.name)} FINAL "
        "WHERE action_name = 'verify_networks' AND action_type = 'nailgun_task' "
        "AND ts_reception >= {start:Float64} AND ts_reception < {end:Float64}",
        {"start": win.start_ts, "end": win.end_ts},
    )
    return exports.latest_verify_status((str(u), int(e), json.loads(b)) for u, e, b in rows)


def reads(ch: Analytics) -> Reads:
    """Fuel-stats' reads on ClickHouse (``Source.analytics_reads``)."""
    return Reads(ch.read, action_logs_of, verify_networks)
