"""ClickHouse schema management: create, add columns, TTL from retention, rebuild by swap."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from downlink.analytics import schema
from downlink.analytics.client import AnalyticsError, connect, parse_url
from downlink.settings import Settings, SettingsError
from downlink.sources.base import AnalyticsTable


def _rows(conn: Any, batch: Sequence[Any]) -> list[Sequence[Any]]:
    return []


TABLE = AnalyticsTable(
    name="things",
    follows="things",
    columns=(("id", "UInt64"), ("ts_reception", "Float64"), ("v", "Float64")),
    order_by=("id",),
    version="v",
    time_column="ts_reception",
    rows=_rows,
)


def _create(ch: Any, name: str) -> str:
    return str(ch.query(
        "SELECT create_table_query FROM system.tables WHERE database = {d:String} "
        "AND name = {n:String}", {"d": ch.database, "n": name})[0][0])


def test_versioned_ddl(analytics_url: str) -> None:
    ch = connect(analytics_url)
    plan = schema.Planned(TABLE, schema.ttl_clause(TABLE, 3))
    assert schema.apply(ch, [plan]) == ["created things"]
    assert schema.apply(ch, [plan]) == []  # nothing to do the second time
    ddl = _create(ch, "things")
    assert "ReplacingMergeTree(v)" in ddl and "PARTITION BY toYYYYMM" in ddl
    assert "TTL" in ddl and "10800" in ddl
    now = time.time()
    rows = [[1, now, 1.0], [1, now, 2.0], [2, now - 1, 1.0], [3, now - 4 * 3600, 1.0]]
    ch.insert("things", rows, ["id", "ts_reception", "v"])
    ch.command(f"OPTIMIZE TABLE {ch.table('things')} FINAL")  # merges apply the TTL
    assert ch.query(f"SELECT id, v FROM {ch.table('things')} ORDER BY id") == [
        (1, 2.0), (2, 1.0)]

    # A new column is added in place; a retention of 0 removes the TTL.
    wider = replace(TABLE, columns=(*TABLE.columns, ("note", "String")))
    done = schema.apply(ch, [schema.Planned(wider, schema.ttl_clause(wider, 0))])
    assert done == ["added things.note", "retention of things: keep all"]
    assert "TTL" not in _create(ch, "things")

    # A new sort key is a rebuild: filled from the old table, swapped in, rows kept.
    rekeyed = replace(wider, order_by=("id", "ts_reception"), rebuild=2)
    done = schema.apply(ch, [schema.Planned(rekeyed, None)])
    assert done == ["rebuilt things (1 -> 2)"]
    assert "ORDER BY (id, ts_reception)" in _create(ch, "things")
    assert ch.query(f"SELECT id, v FROM {ch.table('things')} FINAL ORDER BY id") == [
        (1, 2.0), (2, 1.0)]
    assert schema.apply(ch, [schema.Planned(rekeyed, None)]) == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://x", "must start with"),
        ("chdb://", "needs a data folder"),
        ("clickhouse:///db", "needs a host"),
        ("clickhouse://h:99999/db", "out of range"),
        ("clickhouse://h/bad-name", "not a database name"),
    ],
)
def test_bad_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(AnalyticsError, match=problem):
        parse_url(url)
    with pytest.raises(SettingsError, match=problem):
        Settings(analytics_url=url)


def test_urls() -> None:
    t = parse_url("clickhouses://me:s%40cret@ch.example:9443/events")
    assert (t.host, t.port, t.username, t.password, t.database) == (
        "ch.example", 9443, "me", "s@cret", "events")
    assert "s@cret" not in repr(t)
    assert parse_url("clickhouse://ch").port == 8123
    assert parse_url("chdb:///var/lib/ch?database=x").path == "/var/lib/ch"
    hidden = Settings(analytics_url="clickhouse://me:pw@h/db").public()["analytics_url"]
    assert "pw" not in hidden
