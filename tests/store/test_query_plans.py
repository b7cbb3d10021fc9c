"""Query plans stay right when one source dwarfs another, whatever the statistics say.

``records`` holds millions of Clear Linux records next to a few substrate ones, and
the planners' statistics may be missing (never analysed), stale (analysed before the
substrate records came) or fresh. The rule the queries follow is in
docs/architecture.md ("Queries on a table of skewed sources"); these tests read the
plans (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN``) of the dashboard and
node queries in all three states and check that none walks all of ``records``, and
that the views take the index meant for them. Statistics are written as they would
be at 10M records, too (SQLite's are a table that may be edited): that is where
``/substrate`` took 39 s before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, insert

from downlink.settings import Settings
from downlink.sources.clearlinux.queries import crashes, mce, mce_statuses
from downlink.sources.substrate import queries as nodes
from downlink.store.database import Store
from downlink.store.inserts import RECORD_COLUMNS
from downlink.store.queries.period import Period
from downlink.store.queries.records import RecordFilter, list_records
from downlink.store.queries.search import event_records, search
from downlink.store.tables import records
from downlink.testing.consumers import catch_up
from downlink.testing.generate import RecordGenerator

CLEAR_LINUX = 4000
SCALE = 2500  # stale SQLite statistics are rewritten as if records had 10M rows

Query = Callable[[Connection], Any]


def _queries(gid: int) -> dict[str, Query]:
    since = time.time() - 3600
    return {
        "substrate page": lambda c: nodes.recent_message_types(c, since),
        "reputations": lambda c: nodes.latest_reputations(c, since, 100),
        "node log stats": lambda c: nodes.log_stats(c, "12D3KooW1"),
        "node logs": lambda c: nodes.node_logs(c, "12D3KooW1", limit=100),
        "node logs, no such node": lambda c: nodes.node_logs(c, "12D3KooWnone", limit=100),
        "records of a source": lambda c: list_records(c, RecordFilter(source="substrate"), 50),
        "backtraces": lambda c: crashes.guilty_records(c, gid),
        "backtraces of a period": lambda c: crashes.guilty_records(
            c, gid, period=Period.past(7), limit=20
        ),
        "crash group sparklines": lambda c: crashes.daily_crashes(c, [gid, 1, 2], Period.past(60)),
        "crash list processes": lambda c: crashes.newest_payloads(c, [gid, 1, 2]),
        "crash group page": lambda c: crashes.group_detail(c, gid, Period.past(7), 200, 0),
        "crash group page, estimated": lambda c: crashes.group_detail(
            c, gid, Period.past(60), 200, 0, 0
        ),
        "crash group machines, whole history": lambda c: crashes._ranked_machines(
            c, gid, Period.past(60), 200, 0, None
        ),
        "crash group machines, deep page": lambda c: crashes._ranked_machines(
            c, gid, Period.past(60), 200, 100_000, None
        ),
        "crash group machines, straddled": lambda c: crashes._period_counts(
            c, gid, Period.past(7), [("31000", f"machine-{i}") for i in range(50)]
        ),
        "crash group history": lambda c: crashes._history(c, gid),
        "top crash groups": lambda c: crashes.top_guilties(c, Period.past(60)),
        "mce": lambda c: mce.mce_summary(c, Period.past(90)),
        "mce statuses ranked": lambda c: mce_statuses._ranked(c, Period.past(90), None, 10**9, 20),
        "mce statuses ranked, one build": lambda c: mce_statuses._ranked(
            c, Period.past(90), "31000", 10**9, 20
        ),
        "mce statuses straddled": lambda c: mce_statuses._period_counts(
            c, Period.past(7), None, [f"{i:08x}" for i in range(50)]
        ),
        "event id": lambda c: event_records(c, "5a" * 16),
        "search box": lambda c: search(c, "12D3KooW1"),
    }


# The index each view must take, on SQLite (PostgreSQL may rightly prefer a sequential
# scan of a small rollup table; on ``records`` neither may scan).
SQLITE_INDEX = {
    "substrate page": "ix_records_source_ts_reception",
    "records of a source": "ix_records_source_id",
    "backtraces": "ix_records_guilty_id_id",
    "backtraces of a period": "ix_records_guilty_id_id",
    "crash group page": "ix_rollup_guilty_machines_by_group",
    "top crash groups": "ix_rollup_guilty_by_day",
    "crash group page, estimated": "ix_rollup_guilty_by_day",
    "mce": "sqlite_autoindex_rollup_mce_daily_1 (day>? AND day<?)",
}

# The index every statement of a view must take, on SQLite: the machines of a crash
# group's page, ranked from its all-time totals, and the period's crashes of the few
# machines that straddle it (not the group's rows of the period, which the planner
# may prefer: an equality and a range against an IN list).
SQLITE_EVERY = {
    "crash group machines, whole history": "ix_rollup_guilty_machine_totals_by_count",
    "crash group machines, deep page": "ix_rollup_guilty_machine_totals_by_count",
    "crash group machines, straddled": "ix_rollup_guilty_machines_by_machine",
    "crash group history": "ix_rollup_guilty_machines_by_group",
    # One seek per (day, group): not the whole period's rows.
    "crash group sparklines": "(day=? AND guilty_id=?)",
    # The partial index of the records that have an event id (migration 0025).
    "event id": "ix_records_event_id (event_id=?)",
    "crash list processes": "ix_records_guilty_id_id (guilty_id=?)",
    # The MCE status list: statuses ranked from their totals by count, the period's
    # events of a few of them by status, never a period of rollup_mce's rows.
    "mce statuses ranked": "ix_rollup_mce_statuses_by_count",
    "mce statuses ranked, one build": "ix_rollup_mce_build_statuses_by_count (build=?",
    "mce statuses straddled": "ix_rollup_mce_by_status (status=?",
}


def _statements(conn: Connection, query: Query) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        seen.append((args[2], args[3]))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        query(conn)
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    return seen


def _sqlite_plan(conn: Connection, sql: str, params: Any) -> list[str]:
    return [str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]


def _pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _pg_nodes(child)


def _pg_plan(conn: Connection, sql: str, params: Any) -> list[dict[str, Any]]:
    doc = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar_one()
    doc = json.loads(doc) if isinstance(doc, str) else doc
    return list(_pg_nodes(doc[0]["Plan"]))


def _check(engine: Engine, gid: int, state: str) -> None:
    with engine.connect() as conn:
        for name, query in _queries(gid).items():
            statements = _statements(conn, query)
            assert statements, name
            used: list[str] = []
            for sql, params in statements:
                if conn.dialect.name == "sqlite":
                    lines = _sqlite_plan(conn, sql, params)
                    walks = [line for line in lines if line.startswith("SCAN records")]
                    assert not walks, (state, name, lines)
                    if name in SQLITE_EVERY:
                        index = SQLITE_EVERY[name]
                        assert any(index in line for line in lines), (state, name, sql, lines)
                    used += lines
                else:
                    for node in _pg_plan(conn, sql, params):
                        on_records = node.get("Relation Name") == "records"
                        assert not (on_records and node["Node Type"] == "Seq Scan"), (
                            state,
                            name,
                            node,
                        )
                        if on_records and "Index Scan" in node["Node Type"]:
                            # An index walked end to end, with no condition, is a scan too.
                            assert "Index Cond" in node, (state, name, node)
                        used.append(str(node.get("Index Name", "")))
            if conn.dialect.name == "sqlite" and name in SQLITE_INDEX:
                assert any(SQLITE_INDEX[name] in line for line in used), (state, name, used)
            if conn.dialect.name == "postgresql" and name == "substrate page":
                assert "ix_records_source_ts_reception" in used, (state, used)
            if conn.dialect.name == "postgresql" and name == "event id":
                assert "ix_records_event_id" in used, (state, used)


def _substrate_rows(n: int) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for i in range(n):
        rows.append(
            {
                **{c: "" for c in RECORD_COLUMNS},
                "source": "substrate",
                "record_version": 2,
                "classification": "substrate/system.network_state" if i % 2 else "substrate/x",
                "severity": 1,
                "machine_id": f"12D3KooW{i % 3}",
                "ts_capture": now - i,
                "ts_reception": now - i,
                "payload_version": 1,
                "external": False,
                "payload": "{}",
                "attrs": None,
                "dedup_key": None,
                "guilty_id": None,
                "sender_flagged": None,
            }
        )
    return rows


def _scale_sqlite_statistics(conn: Connection) -> None:
    """Rewrite sqlite_stat1 as if ``records`` had SCALE times its rows (same shape)."""
    rows = conn.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'records'").all()
    for idx, stat in rows:
        numbers = [int(x) for x in str(stat).split()]
        total = numbers[0]
        scaled = [n * SCALE if n == total else n for n in numbers]
        conn.exec_driver_sql(
            "UPDATE sqlite_stat1 SET stat = ? WHERE tbl = 'records' AND idx IS ?",
            (" ".join(map(str, scaled)), idx),
        )
    conn.exec_driver_sql("ANALYZE sqlite_schema")  # reload the edited statistics


@pytest.fixture
def skewed(db_url: str) -> Iterator[tuple[Engine, int]]:
    """A database of generated Clear Linux records (crash groups, rollups) and no
    statistics; the top crash group's id."""
    store = Store(Settings(database_url=db_url, sqlite_synchronous="OFF"))
    store.migrate()
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        gen = RecordGenerator(seed=3, machines=300, days=60)

        def load(conn: Connection) -> None:
            if conn.dialect.name == "postgresql":
                for table in (
                    "records",
                    "rollup_guilty",
                    "rollup_guilty_machines",
                    "rollup_guilty_machine_totals",
                    "rollup_mce",
                ):
                    conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            rows = list(gen.rows(CLEAR_LINUX))
            conn.execute(insert(records), [{c: r.get(c) for c in RECORD_COLUMNS} for r in rows])

        store.run_write(load)
        catch_up(store)  # crash groups and rollups
        with engine.connect() as conn:
            top = crashes.top_guilties(conn, Period.past(60), None, 1)
        yield engine, int(top[0]["guilty_id"])
    finally:
        engine.dispose()
        store.close()


def _analyze(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _add_substrate(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(records), _substrate_rows(n))


def test_plans_with_missing_stale_and_fresh_statistics(skewed: tuple[Engine, int]) -> None:
    engine, gid = skewed
    _check(engine, gid, "missing, no substrate records")
    _add_substrate(engine, 10)
    _check(engine, gid, "missing, a few substrate records")
    _analyze(engine)
    _add_substrate(engine, 10)
    _check(engine, gid, "fresh")
    # Stale: analysed when there were no substrate records at all, then some arrived.
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM records WHERE source = 'substrate'")
    _analyze(engine)
    _add_substrate(engine, 20)
    _check(engine, gid, "stale")
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            _scale_sqlite_statistics(conn)
        engine.dispose()
        _check(engine, gid, "stale, 10M records")
