"""The kept failures-before-success counts against the old read-time query.

In process, on SQLite: random installations (two shown at first; then shown,
filtered, replaced with another release) and random action logs written through the
real sink functions in random batches and orders, each batch handed to the
``fuelstats_deployments`` consumer's ``handle`` (sometimes twice: replays). Then the
report from the counts must equal the old query over the rows for every release, and
the range semantics for day ranges; the counts must equal a rebuild from the rows;
``reset`` then a replay gives the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, select

from downlink.sources.base import LogRecord
from downlink.sources.fuelstats import counts, deployments, reports
from downlink.sources.fuelstats.sink import StructureRow, insert_action_logs, upsert_structure
from downlink.sources.fuelstats.tables import action_logs, metadata
from downlink.sources.fuelstats.tables import counts as counts_table
from downlink.sources.fuelstats.tables import deployments as deployments_table
from downlink.store.tables import jobs
from tests.sources.fuelstats import reference

DAY = 86400.0
UIDS = ("m1", "m2", "m3")
RELEASES = ("8.0", "9.0")
BASE_DAY = 17000
RANGES = ((0, 0), (1, 2), (2, 3), (0, 3))  # first and last day of a date filter

log_st = st.fixed_dictionaries({
    "uid": st.sampled_from(UIDS),
    "ext": st.integers(1, 20),
    "name": st.sampled_from(("deployment", "deployment", "deployment", "verify_networks")),
    "status": st.sampled_from(("ready", "error", "error", None)),
    "cluster": st.sampled_from((None, 1, 2, 2)),
    "top": st.sampled_from((True, True, True, False)),
    "day": st.integers(0, 3),
})
structure_st = st.tuples(st.sampled_from(UIDS), st.sampled_from(RELEASES),
                         st.sampled_from((False, False, True)))
event_st = st.one_of(st.tuples(st.just("logs"), st.lists(log_st, min_size=1, max_size=15)),
                     st.tuples(st.just("structure"), structure_st))


def _log(ext: int, status: str, day: int = 0, uid: str = "m1") -> dict[str, Any]:
    return {"uid": uid, "ext": ext, "name": "deployment", "status": status, "cluster": 1,
            "top": True, "day": day}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    found = create_engine("sqlite://")
    metadata.create_all(found)
    jobs.create(found)  # the writers of counts read the recount's cursor there
    try:
        yield found
    finally:
        found.dispose()


def _row(log: dict[str, Any]) -> dict[str, Any]:
    return {"master_node_uid": log["uid"], "external_id": log["ext"], "body": {},
            "action_type": "nailgun_task", "action_name": log["name"],
            "cluster_id": log["cluster"], "ended_status": log["status"],
            "duration_s": 60.0 if log["status"] else None, "top_level": log["top"],
            "ts_reception": (BASE_DAY + log["day"]) * DAY + 3600.0}


def _records(conn: Connection, keys: list[tuple[str, int]]) -> list[LogRecord]:
    a = action_logs.c
    found = []
    for key in keys:
        row = conn.execute(select(action_logs).where(
            a.master_node_uid == key[0], a.external_id == key[1])).mappings().one()
        found.append(LogRecord(int(row["id"]), float(row["ts_reception"]), dict(row)))
    return found


def _kept(conn: Connection) -> dict[tuple[Any, ...], tuple[int, float]]:
    return {(r["report"], r["day"], r["release"], r["key"]): (r["n"], r["total"])
            for r in conn.execute(select(counts_table)).mappings() if r["n"] or r["total"]}


def _deployment_rows(conn: Connection) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in conn.execute(select(deployments_table)))


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=14), replay=st.booleans())
# Failures before and after the first success, which comes late, on another day, and
# is then preceded by an earlier success (lower id) received later; the installation
# shown, replaced by another release, then filtered.
@example(events=[
    ("logs", [_log(4, "error"), _log(6, "ready", 2), _log(7, "error")]),
    ("structure", ("m1", "9.0", False)),
    ("logs", [_log(1, "error", 1), _log(5, "error", 3)]),
    ("structure", ("m1", "8.0", False)),
    ("logs", [_log(3, "ready", 3), _log(2, "error")]),
], replay=False)
@example(events=[
    ("structure", ("m1", "9.0", False)),
    ("logs", [_log(1, "error"), _log(2, "error", 1), _log(3, "ready", 1), _log(4, "error")]),
    ("structure", ("m2", "9.0", False)),
    ("logs", [_log(1, "ready", 2, "m2")]),
    ("structure", ("m1", "9.0", True)),
    ("structure", ("m1", "9.0", False)),
], replay=True)
def test_counts_equal_the_read_time_query(
    engine: Engine, events: list[tuple[str, Any]], replay: bool
) -> None:
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            now = (BASE_DAY + 4) * DAY
            # m1 and m2 known and shown from the start (m3 only if an event adds it).
            start = [("structure", ("m1", "9.0", False)), ("structure", ("m2", "8.0", False))]
            for kind, value in start + events:
                if kind == "structure":
                    uid, release, hidden = value
                    upsert_structure(conn, StructureRow(
                        uid, {"master_node_uid": uid, "clusters": [], "clusters_num": 0},
                        release, hidden), now)
                    continue
                rows = {(log["uid"], log["ext"]): _row(log) for log in value}
                inserted = insert_action_logs(conn, list(rows.values()))
                batch = _records(conn, sorted(inserted))
                deployments.handle(conn, batch)
                if replay:
                    deployments.handle(conn, batch[::-1])
            for release in (None, *RELEASES):
                assert reports.failures_before_success(conn, reports.Filter(release)) \
                    == reference.failures_before_success(conn, release)
                for first, last in RANGES:
                    f = reports.Filter(release, (BASE_DAY + first) * DAY,
                                       (BASE_DAY + last + 1) * DAY)
                    assert reports.failures_before_success(conn, f) == \
                        reference.failures_in_range(conn, release, BASE_DAY + first,
                                                    BASE_DAY + last)
            kept, rows = _kept(conn), _deployment_rows(conn)
            counts.rebuild(conn)
            assert _kept(conn) == kept
            deployments.reset(conn, (BASE_DAY + 1) * DAY, (BASE_DAY + 3) * DAY)
            keys = [(str(u), int(e)) for u, e in conn.execute(
                select(action_logs.c.master_node_uid, action_logs.c.external_id)
                .where(action_logs.c.ts_reception >= (BASE_DAY + 1) * DAY,
                       action_logs.c.ts_reception < (BASE_DAY + 3) * DAY)
                .order_by(action_logs.c.id))]
            deployments.handle(conn, _records(conn, keys))
            assert _deployment_rows(conn) == rows
            assert _kept(conn) == kept
        finally:
            tx.rollback()
