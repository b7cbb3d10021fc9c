"""fuel-stats posts go through the core's group-commit writer and its spool (the sinks).

Real servers over HTTP on SQLite and PostgreSQL: concurrent posts share commits, a
request larger than the writer's queue is 503 with Retry-After, one master node the
database refuses is ``failed`` item by item while the others are stored, and (on a
PostgreSQL that goes down) posts are answered from the fsynced spool, survive a
SIGKILL and reach the database once it is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.sources.fuelstats.client import err, minimal, nailgun_task, ok, post, statuses

LOGS = "action_logs"
OSWL = "oswl_stats"


def oswl(uid: str, ext: int, resource: str = "vm") -> dict[str, Any]:
    """One OSWL snapshot item."""
    return {"master_node_uid": uid, "id": ext, "cluster_id": 1, "created_date": "2016-05-01",
            "updated_time": "10:00:00", "resource_type": resource,
            "resource_checksum": f"c{ext}",
            "resource_data": {"added": [], "current": [{"id": ext}], "removed": [],
                              "modified": []}}


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples named exactly ``name`` on ``/metrics``."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def logs_of(client: httpx.Client, uid: str) -> set[int]:
    """The external ids of a master node's stored action logs."""
    page = client.get(f"/api/v1/json/action_logs/{uid}",
                      params={"paging_params": '{"limit": 10000, "offset": 0}'}).json()
    return {o["external_id"] for o in page["objs"]}


def oswls_of(database_url: str) -> set[tuple[str, int]]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT master_node_uid, external_id FROM fuel_oswl_stats"))
            return {(str(u), int(e)) for u, e in rows}
    finally:
        engine.dispose()


def test_concurrent_posts_share_commits(fuel_server: Callable[..., LiveServer]) -> None:
    server = fuel_server({"DOWNLINK_BATCH_WAIT_MS": "50"})
    posts = 8 * 5
    answers: list[int] = []
    lock = threading.Lock()

    def upload(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(5):
                uid = f"mn{worker}"
                logs = [nailgun_task(uid, n * 10 + k) for k in range(10)]
                body = ok(post(client, LOGS, {"action_logs": logs}), LOGS)
                structure = post(client, "installation_structure", minimal(uid))
                with lock:
                    answers.append(statuses(body, LOGS).get("added", 0))
                    answers.append(structure.status_code)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    logs_added = [a for i, a in enumerate(answers) if i % 2 == 0]
    codes = [a for i, a in enumerate(answers) if i % 2 == 1]
    assert logs_added == [10] * posts
    assert sorted(codes) == [200] * (posts - 8) + [201] * 8  # new once per node
    # 80 writes (action-log requests and structures) in fewer commits than that.
    commits = metric(server.url, "downlink_writer_batch_records_count")
    assert 0 < commits < 2 * posts


def test_more_than_the_queue_holds_is_503_with_retry_after(
    fuel_server: Callable[..., LiveServer],
) -> None:
    server = fuel_server({"DOWNLINK_QUEUE_MAX": "4", "DOWNLINK_BATCH_MAX": "4"})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        too_many = [nailgun_task("mn1", i) for i in range(5)]
        resp = post(client, LOGS, {"action_logs": too_many})
        err(resp, 503)
        assert resp.headers["retry-after"] == "1"
        resp = post(client, OSWL, {"oswl_stats": [oswl("mn1", i) for i in range(5)]})
        err(resp, 503)
        assert resp.headers["retry-after"] == "1"
        assert logs_of(client, "mn1") == set()  # nothing of a refused request stored
        answer = ok(post(client, LOGS, {"action_logs": too_many[:4]}), LOGS)
        assert statuses(answer, LOGS) == {"added": 4}


def test_a_refused_node_fails_item_by_item_the_others_are_stored(
    fuel_server: Callable[..., LiveServer], new_database: Callable[[str], str]
) -> None:
    url = new_database("refusing")
    server = fuel_server(database_url=url)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table in ("fuel_action_logs", "fuel_oswl_stats"):
                conn.execute(text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    "WHEN NEW.master_node_uid = 'bad' BEGIN SELECT RAISE(ABORT, 'no'); END"))
        else:
            for table in ("fuel_action_logs", "fuel_oswl_stats"):
                conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT refuse_bad "
                                  "CHECK (master_node_uid <> 'bad') NOT VALID"))
    engine.dispose()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        logs = [nailgun_task("good", i) if i % 10 else nailgun_task("bad", i)
                for i in range(100)]
        answer = ok(post(client, LOGS, {"action_logs": logs}), LOGS)
        by_uid: dict[str, set[str]] = {}
        for item in answer[LOGS]:
            by_uid.setdefault(item["master_node_uid"], set()).add(item["status"])
        assert by_uid == {"good": {"added"}, "bad": {"failed"}}
        assert logs_of(client, "good") == {i for i in range(100) if i % 10}
        assert logs_of(client, "bad") == set()
        snapshots = [oswl("good", 1), oswl("bad", 2), oswl("good", 3)]
        answer = ok(post(client, OSWL, {"oswl_stats": snapshots}), OSWL)
        assert [i["status"] for i in answer[OSWL]] == ["added", "failed", "added"]
    assert oswls_of(url) == {("good", 1), ("good", 3)}


@pytest.mark.slow
def test_database_down_posts_are_spooled_survive_sigkill_and_drain(tmp_path: Path) -> None:
    pg = TempPostgres(fsync=True).start()
    try:
        url = pg.create_database("fuel_spool")
        env = {"DOWNLINK_SPOOL_DIR": str(tmp_path / "spool")}
        server = LiveServer(url, env=env, log=tmp_path / "server.log").start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                # Stored while the database is up: the same node later is an update.
                ok(post(client, "installation_structure", minimal("mn0")),
                   "installation_structure", 201)
                pg.pause()
                ok(post(client, "installation_structure", minimal("mn1")),
                   "installation_structure", 201)
                ok(post(client, "installation_structure",
                        minimal("mn0", clusters_num=3)), "installation_structure", 201)
                logs = [nailgun_task("mn1", i) for i in range(50)]
                answer = ok(post(client, LOGS, {"action_logs": logs}), LOGS)
                assert statuses(answer, LOGS) == {"added": 50}
                answer = ok(post(client, OSWL, {"oswl_stats": [oswl("mn1", 1)]}), OSWL)
                assert statuses(answer, OSWL) == {"added": 1}
                assert metric(server.url, "downlink_spool_records_in_total") == 53
        finally:
            server.kill()  # SIGKILL with every item of the outage only in the spool
        pg.resume()
        server = LiveServer(url, env=env, log=tmp_path / "server2.log").start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and len(logs_of(client, "mn1")) < 50:
                    time.sleep(0.2)
                assert logs_of(client, "mn1") == set(range(50))
                info = client.get("/api/v1/json/installation_info/mn1")
                assert info.status_code == 200
                mn0 = client.get("/api/v1/json/installation_info/mn0").json()
                assert mn0["structure"]["clusters_num"] == 3  # the spooled update, applied
                assert mn0["modification_date"] is not None
                assert oswls_of(url) == {("mn1", 1)}
                # Drained: new posts go to the database again, with their real statuses.
                ok(post(client, "installation_structure", minimal("mn1")),
                   "installation_structure", 200)
                answer = ok(post(client, LOGS, {"action_logs": logs[:2]}), LOGS)
                assert statuses(answer, LOGS) == {"existed": 2}
        finally:
            server.stop()
    finally:
        pg.stop()
