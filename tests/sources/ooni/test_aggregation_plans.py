"""The aggregation's plans read a period's rollup rows or indexed fastpath rows, never all.

Like ``tests/store/test_query_plans.py``: the statements ``aggregation.run`` sends for
each kind of request are explained (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL
``EXPLAIN``) with missing and fresh statistics. On SQLite no table is scanned whole and
the filtered requests take the index led by their filter; on PostgreSQL ``ooni_fastpath``
is never scanned sequentially (a small rollup table may rightly be).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text

from downlink.settings import Settings
from downlink.sources.ooni import aggregation, fastpath_store
from downlink.store import migrate
from downlink.store.engine import _normalise

from .test_rollup import T0, _row

# request -> the index SQLite must use for it (None: any index, no scan).
REQUESTS: list[tuple[dict[str, str], str | None]] = [
    ({"axis_x": "measurement_start_day"}, None),
    ({"axis_x": "measurement_start_day", "axis_y": "probe_cc"}, None),
    ({"axis_x": "probe_asn", "probe_cc": "IT"}, "ix_ooni_agg_day_asn_probe_cc_day"),
    ({"axis_x": "measurement_start_day", "probe_asn": "AS3269"},
     "ix_ooni_agg_day_asn_probe_asn_day"),
    ({"axis_x": "measurement_start_day", "domain": "a.example"},
     "ix_ooni_agg_day_domain_domain_day"),
    ({"axis_x": "measurement_start_day", "input": "https://rare.example/"},
     "ix_ooni_fastpath_input_measurement_start_time"),
    ({"axis_x": "measurement_start_day", "time_grain": "hour",
      "since": "2026-03-02T05:30:00", "until": "2026-03-05T10:10:00"}, None),
]


@pytest.fixture
def loaded(db_url: str) -> Iterator[Engine]:
    settings = Settings(database_url=db_url)
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine, sources=settings.registry)
    rng = random.Random(3)
    rows = [_row(i, rng) for i in range(3000)]
    with engine.begin() as conn:
        fastpath_store.upsert(conn, rows, [T0 + i for i in range(len(rows))])
    try:
        yield engine
    finally:
        engine.dispose()


def _statements(conn: Connection, agg: aggregation.Aggregation) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        seen.append((args[2], args[3]))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        aggregation.run(conn, agg)
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    return seen


def _pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _pg_nodes(child)


def _check(engine: Engine, state: str) -> None:
    with engine.connect() as conn:
        for params, index in REQUESTS:
            agg = aggregation.parse({"since": "2026-03-01", "until": "2026-03-11", **params})
            statements = _statements(conn, agg)
            assert statements, params
            lines: list[str] = []
            for sql, bound in statements:
                if conn.dialect.name == "sqlite":
                    plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, bound)
                    found = [str(r[3]) for r in plan]
                    scans = [x for x in found if x.startswith("SCAN ooni_")]
                    assert not scans, (state, params, found)
                    lines += found
                else:
                    doc = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, bound).scalar_one()
                    doc = json.loads(doc) if isinstance(doc, str) else doc
                    for node in _pg_nodes(doc[0]["Plan"]):
                        on_rows = node.get("Relation Name") == "ooni_fastpath"
                        assert not (on_rows and node["Node Type"] == "Seq Scan"), (
                            state, params, node,
                        )
                        if on_rows and "Index" in node["Node Type"]:
                            assert "Index Cond" in node, (state, params, node)
            if conn.dialect.name == "sqlite" and index is not None:
                assert any(index in x for x in lines), (state, params, lines)


def test_aggregation_plans_with_missing_and_fresh_statistics(loaded: Engine) -> None:
    _check(loaded, "missing")
    with loaded.begin() as conn:
        conn.execute(text("ANALYZE"))
    _check(loaded, "fresh")
