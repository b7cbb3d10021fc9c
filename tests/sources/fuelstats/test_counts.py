"""The dashboard's counts kept at ingest equal the counts recomputed from the rows.

Real servers over HTTP on both databases: action logs before their installation,
structures replaced with another release and other environments, a filtered
installation with logs, a refilter moving installations in and out; after each, the
kept ``fuel_counts`` must be exactly what :func:`counts.rebuild` computes from the
stored rows. Emptied counts are rebuilt by the recount job a server queues at start,
and the dashboard's answer is the same as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, select, text

from downlink.sources.fuelstats import counts
from downlink.sources.fuelstats.tables import counts as counts_table
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from tests.sources.fuelstats.client import minimal, nailgun_task, ok, post, write_rules


def structure(uid: str, release: str, statuses: list[str], build: str = "good") -> dict[str, Any]:
    envs = [{"id": i + 1, "mode": "ha_compact", "status": s, "nodes_num": 2,
             "release": {"os": "Ubuntu", "version": f"liberty-{release}", "name": "Liberty"},
             "attributes": {"libvirt_type": "kvm"},
             "nodes": [{"id": 10 * i + k, "roles": ["compute", "cinder"], "status": "ready",
                        "meta": {"system": {"manufacturer": "Dell", "product": "R630"}}}
                       for k in range(2)]}
            for i, s in enumerate(statuses)]
    return minimal(uid, clusters=envs, clusters_num=len(envs),
                   fuel_release={"release": release, "feature_groups": [], "api": "1",
                                 "build_id": build})


def logs(uid: str, first: int) -> list[dict[str, Any]]:
    return [nailgun_task(uid, first, start="2016-05-01T10:00:00", end="2016-05-01T10:05:00"),
            nailgun_task(uid, first + 1, name="verify_networks", status="error"),
            nailgun_task(uid, first + 2, name="verify_networks"),
            nailgun_task(uid, first + 3, status="error")]


def kept(engine: Engine) -> dict[tuple[str, int, str, str], tuple[int, float]]:
    with engine.connect() as conn:
        rows = conn.execute(select(counts_table)).mappings()
        return {(r["report"], r["day"], r["release"], r["key"]): (r["n"], round(r["total"], 6))
                for r in rows if r["n"] or r["total"]}


def recomputed(engine: Engine) -> dict[tuple[str, int, str, str], tuple[int, float]]:
    with engine.connect() as conn:
        tx = conn.begin()
        counts.rebuild(conn)
        rows = conn.execute(select(counts_table)).mappings()
        found = {(r["report"], r["day"], r["release"], r["key"]): (r["n"], round(r["total"], 6))
                 for r in rows if r["n"] or r["total"]}
        tx.rollback()
    return found


def test_kept_counts_equal_recomputed_ones(
    fuel_server: Callable[..., LiveServer], new_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = new_database("counts")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"9.0": None, "8.0": {"good": None}}))
    env = {"DOWNLINK_FUEL_FILTERING_RULES": str(rules)}
    server = fuel_server(env, database_url=url)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            steps: list[tuple[str, dict[str, Any]]] = [
                ("action_logs", {"action_logs": logs("mn1", 1)}),  # before its structure
                ("installation_structure", structure("mn1", "9.0", ["operational", "new"])),
                ("action_logs", {"action_logs": logs("mn1", 10)}),
                ("installation_structure", structure("mn2", "8.0", ["error"], build="qa")),
                ("action_logs", {"action_logs": logs("mn2", 1)}),  # filtered: not counted
                ("installation_structure", structure("mn1", "8.0", ["error"] * 3)),
                ("installation_structure", structure("mn3", "9.0", [])),
            ]
            for resource, body in steps:
                resp = post(client, resource, body)
                assert resp.status_code in (200, 201), resp.text
                wait_caught_up(client)  # the deployments consumer's share, after the ack
                assert kept(engine) == recomputed(engine), (resource, body)
            summary = client.get("/fuel.json").json()
            assert summary["summary"]["installations"] == 2
            assert summary["health_checks"] == [{"check": "verify_networks", "runs": 4,
                                                 "failed": 2}]
            write_rules(rules, {"9.0": None, "8.0": None})  # mn2 becomes shown
            assert client.post("/api/v1/fuel/refilter").status_code == 202
            deadline = time.monotonic() + 60
            while client.get("/api/v1/fuel/refilter").json()["state"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert kept(engine) == recomputed(engine)
            before = client.get("/fuel.json").json()
            assert before["summary"]["installations"] == 3
            assert before["health_checks"][0]["runs"] == 6
            ok(post(client, "action_logs", {"action_logs": logs("mn3", 1)}), "action_logs")
            wait_caught_up(client)
            assert kept(engine) == recomputed(engine)
            before = client.get("/fuel.json").json()
        server.stop()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM fuel_counts"))
        again = fuel_server(env, database_url=url)
        with httpx.Client(base_url=again.url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while kept(engine) != recomputed(engine):
                assert time.monotonic() < deadline, "the recount job never ran"
                time.sleep(0.2)
            assert client.get("/fuel.json").json() == before
    finally:
        engine.dispose()
