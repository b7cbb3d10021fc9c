"""The crash, MCE/thermal and substrate pages on ClickHouse answer as on the SQL store.

A fleet spread over three weeks (crash groups on several builds and machines, kernel
oopses with unreliable frames, crashes without frames, MCE events with and without a
status, thermal events, substrate messages, records stored flagged) goes into the SQL
store; a server on the same database with chdb ships it. A frame is then marked never
guilty and a group hidden (SQL-only state: the ClickHouse reads join it by key), and
every page's JSON or CSV twin is asked of that server and of one without ClickHouse.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete

from downlink.analytics.client import connect
from downlink.settings import Settings
from downlink.sources.clearlinux.tables import (
    rollup_class_daily,
    rollup_guilty,
    rollup_guilty_machines,
    rollup_mce,
    rollup_mce_build_statuses,
    rollup_mce_daily,
    rollup_mce_machine_weeks,
    rollup_mce_machines,
    rollup_mce_statuses,
)
from downlink.store.database import Store
from downlink.store.engine import _normalise
from downlink.store.queries.period import day_date, today
from downlink.store.tables import records
from tests.analytics.helpers import app, caught_up
from tests.web.helpers import CRASH, MCE, OOPS, load, rec

pytestmark = pytest.mark.postgres

DAY = 86400.0


def _crash(top: str, module: str = "libfoo.so") -> str:
    return (
        "Process: /usr/bin/" + top[:4] + "\nPID: 1\nSignal: 11\n\n"
        "Backtrace (TID 1):\n"
        f"#0 {top}() - [{module}] - src/a.c:1\n"
        "#1 common_helper() - [libc.so.6]\n"
        "#2 ??? - [/usr/bin/x]\n"
    )


UNRELIABLE = (
    "Crash Report:\nBacktrace :\n#0 ? foo - [kernel]\n#1 ??? - [kernel]\n#2 ? bar - [kernel]\n"
)
NO_FRAMES = "Process: /usr/bin/none\nPID: 3\nSignal: 6\n"


def fleet(now: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    machines = [f"m{i}" for i in range(6)]
    builds = ["31000", "31001", "31010"]
    payloads = [CRASH, _crash("alpha"), _crash("beta"), _crash("gamma", "libbar.so"),
                UNRELIABLE, NO_FRAMES]
    for i in range(150):
        ts = now - (i % 20) * DAY - (i % 7) * 600.0
        rows.append(rec(
            classification=("org.clearlinux/crash/clr" if i % 5 else
                            "org.clearlinux/kernel/warning"),
            payload=payloads[(i * 7) % len(payloads)] if i % 11 else OOPS,
            machine_id=machines[(i * 5) % len(machines)],
            build=builds[(i // 3) % len(builds)],
            severity=3,
            ts_reception=ts,
            ts_capture=ts,
            # A few stored flagged (their sender id did not match): listed, not counted.
            sender_flagged=True if i % 23 == 0 else None,
        ))
    statuses = [MCE, MCE.replace("9c00004000010090", "BE00000000800400"), "no status"]
    for i in range(60):
        ts = now - (i % 30) * DAY
        rows.append(rec(
            classification=("org.clearlinux/mce/corrected", "org.clearlinux/mce/SRAO",
                            "org.clearlinux/mce/thermal")[i % 3],
            payload=statuses[i % len(statuses)],
            machine_id=machines[i % 4],
            build=builds[i % 2],
            ts_reception=ts,
            ts_capture=ts,
            sender_flagged=True if i % 17 == 0 else None,
        ))
    # More statuses than the MCE page lists: both stores cut the list the same way.
    for i in range(30):
        ts = now - (i % 25) * DAY
        rows.append(rec(
            classification="org.clearlinux/mce/corrected",
            payload=f"STATUS 8c000040{i:08x} MCGSTATUS 0\n",
            machine_id=machines[i % 4],
            build=builds[i % 2],
            ts_reception=ts,
            ts_capture=ts,
        ))
    for i in range(40):
        ts = now - (300.0 if i % 2 else 7200.0) - i
        rows.append(rec(
            source="substrate",
            classification=f"substrate/system.{('interval', 'connected', 'block')[i % 3]}",
            machine_id=("", "12D3KooWpeerA", "12D3KooWpeerB")[i % 3],
            payload=json.dumps({"msg": "system.interval", "height": i}),
            ts_reception=ts,
            ts_capture=ts,
            sender_flagged=True if i % 13 == 0 else None,
        ))
    rows.extend(rec(ts_reception=now - i * DAY, ts_capture=now - i * DAY, build=builds[i % 3])
                for i in range(10))
    return rows


def _period(days_back: int, days: int) -> dict[str, str]:
    last = today() - days_back
    return {"from": day_date(last - days + 1).isoformat(), "to": day_date(last).isoformat()}


def _queries(groups: list[int], machine: str) -> list[tuple[str, dict[str, str]]]:
    three_weeks = _period(0, 21)
    out: list[tuple[str, dict[str, str]]] = [
        ("/crashes.json", {}),
        ("/crashes.json", three_weeks),
        ("/crashes.json", {**three_weeks, "build": "31001"}),
        ("/crashes.json", {**three_weeks, "hidden": "1"}),
        ("/crashes.json", {**_period(3, 5), "limit": "2"}),
        ("/crashes.csv", {**three_weeks, "hidden": "1"}),
        ("/mce.json", {}),
        ("/mce.json", three_weeks),
        ("/mce.json", {**_period(9, 10), "build": "31001", "top": "2"}),
        ("/mce.csv", _period(0, 40)),
        ("/thermal.json", {}),
        ("/thermal.json", _period(2, 30)),
        ("/thermal.csv", three_weeks),
        ("/substrate.json", {}),
        ("/substrate.json", {"minutes": "10000"}),
        ("/stats.json", three_weeks),
        ("/builds.json", three_weeks),
        ("/population.json", {"bucket": "week", "range": "90d"}),
    ]
    for gid in groups:
        out += [
            (f"/crashes/{gid}.json", three_weeks),
            (f"/crashes/{gid}.json", {**three_weeks, "limit": "2", "offset": "1"}),
            (f"/crashes/{gid}.json", _period(4, 3)),
            (f"/crashes/{gid}/backtraces.json", three_weeks),
            (f"/crashes/{gid}/backtraces.json", {**three_weeks, "build": "31010"}),
            (f"/crashes/{gid}/backtraces.json", {**_period(1, 9), "machine_id": machine}),
        ]
    return out


def _answers(client: TestClient, queries: list[tuple[str, dict[str, str]]]) -> list[str]:
    out = []
    for path, params in queries:
        r = client.get(path, params=params)
        assert r.status_code == 200, (path, params, r.text)
        out.append(r.text)
    return out


def _regrouped(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get("/crashes/regroup.json").json()["regroup"]
        if job is not None and job["state"] == "done":
            return
        assert job is None or job["state"] != "failed", job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_pages_same_answers(db_url: str, analytics_url: str) -> None:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0)
    store = Store(settings)
    store.migrate()
    try:
        load(store, fleet(time.time()))
    finally:
        store.close()
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        caught_up(ch_app)
        top = ch_app.get("/crashes.json", params=_period(0, 21)).json()["guilties"]
        assert len(top) >= 5
        # SQL-only state: a frame never guilty (regrouped by the job), a group hidden.
        frame = json.dumps(["clock_nanosleep@GLIBC_2.2.5()", "libc.so.6"])
        r = ch_app.post("/crashes/blacklist", data={"frame": frame},
                        headers={"accept": "application/json"})
        assert r.status_code == 202, r.text
        _regrouped(ch_app)
        hidden = next(g["guilty_id"] for g in top if g["function"] == "beta()")
        r = ch_app.post(f"/crashes/{hidden}", data={"hide": "1"},
                        headers={"accept": "application/json"})
        assert r.status_code == 200, r.text
        caught_up(ch_app)
        groups = [g["guilty_id"] for g in
                  ch_app.get("/crashes.json", params={**_period(0, 21), "hidden": "1"})
                  .json()["guilties"]]
        assert hidden in groups and len(groups) >= 5
        assert not any(g["function"].startswith("clock_nanosleep") for g in
                       ch_app.get("/crashes.json", params=_period(0, 21)).json()["guilties"])
        queries = _queries(groups, "m1")
        from_clickhouse = _answers(ch_app, queries)
    with app(settings) as sql_app:
        from_sql = _answers(sql_app, queries)
    for query, ours, theirs in zip(queries, from_clickhouse, from_sql, strict=True):
        assert ours == theirs, query
    assert '["00800400",' in from_sql[queries.index(("/mce.json", _period(0, 21)))]
    assert '["other",' in from_sql[queries.index(("/mce.json", _period(0, 21)))]
    ch = connect(analytics_url)
    shipped = ch.query(f"SELECT count() FROM {ch.table('clearlinux_crashes')} FINAL")[0][0]
    assert shipped == 150  # the crash records, flagged ones included (backtraces list them)

    # The answers came from ClickHouse: with the SQL rollups and substrate records gone,
    # they stay.
    engine = create_engine(_normalise(db_url))
    with engine.begin() as conn:
        for table in (rollup_guilty, rollup_guilty_machines, rollup_mce, rollup_mce_machines,
                      rollup_mce_machine_weeks, rollup_class_daily, rollup_mce_daily,
                      rollup_mce_statuses, rollup_mce_build_statuses):
            conn.execute(delete(table))
        conn.execute(delete(records).where(records.c.source == "substrate"))
    engine.dispose()
    with app(settings.replace(analytics_url=analytics_url)) as ch_app:
        assert _answers(ch_app, queries) == from_clickhouse
