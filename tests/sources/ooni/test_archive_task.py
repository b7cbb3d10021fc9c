"""The server archives OONI's hours by itself: no command, one process at a time.

Against real ``downlink serve`` processes on SQLite and PostgreSQL: measurements of an
hour that is over reach the archive with nothing run by hand; two server processes and
``downlink ooni archive`` racing leave each measurement indexed once and the same
bytes as an archive built in one go; a server SIGKILLed while it archives converges
once restarted; with ``DOWNLINK_RUN_CONSUMERS=off`` ``downlink consume`` archives and
the server shows it; a missing S3 bucket shows on ``/consumers`` without stopping
ingestion. Time: the measurements' reception times are moved back one to three hours
in one transaction (as ``now + 2 h`` does for the command's tests), before any
process that archives has seen them.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
import pytest
from sqlalchemy import Engine, create_engine, delete, func, insert, select, update

from downlink.archive.storage import LocalStorage, open_storage
from downlink.sources.ooni import archive
from downlink.sources.ooni.submission import mint_uid
from downlink.sources.ooni.tables import archive_index, measurements, state
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.store.tables import tasks as tasks_table
from downlink.testing import cli
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from downlink.testing.polling import wait_for
from tests.archive.test_days import S3_ENV
from tests.sources.ooni.conftest import ooni_server
from tests.sources.ooni.test_archive import _files, _submit_all, moto, run_task  # noqa: F401

ARCHIVING = {
    "DOWNLINK_OONI_ARCHIVE_EVERY_S": "0.2",
    "DOWNLINK_OONI_ARCHIVE_GRACE_S": "0",
    "DOWNLINK_CONSUMER_RETRY_MAX_S": "1",
}
HOUR = 3600.0


def task_state(url: str) -> dict[str, Any]:
    """The task ooni_archive as ``/consumers.json`` shows it."""
    found = httpx.get(f"{url}/consumers.json", timeout=10).json()["tasks"]
    return next(t for t in found if t["name"] == "ooni_archive")


def move_back(engine: Engine) -> None:
    """Move every measurement 1 to 3 hours back, in one transaction."""
    with engine.begin() as conn:
        conn.execute(update(measurements).values(
            ts_reception=measurements.c.ts_reception - HOUR * (1 + measurements.c.id % 3)))


def submitted_hours_ago(db_url: str, tmp_path: Path) -> dict[str, str]:
    """The fixture measurements, posted to a server that does not archive, moved back."""
    server = ooni_server(db_url, tmp_path / "submit.log",
                         env={"DOWNLINK_OONI_ARCHIVE_EVERY_S": "0"})
    try:
        uids = _submit_all(server)
        wait_caught_up(server.url)
    finally:
        server.stop()
    engine = create_engine(_normalise(db_url))
    try:
        move_back(engine)
    finally:
        engine.dispose()
    return uids


def indexed(engine: Engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(select(archive_index))}


def hours_of(engine: Engine) -> list[float]:
    with engine.connect() as conn:
        stamps = conn.execute(select(measurements.c.ts_reception)).scalars()
        return sorted({float(int(t // HOUR) * HOUR) for t in stamps})


def rebuilt(engine: Engine, root: Path) -> dict[str, bytes]:
    """The archive built again from the database, hour by hour, in this process."""
    for hour in hours_of(engine):
        run_task(engine, lambda ctx, h=hour: archive.archive_hour(
            ctx, LocalStorage(root), h, "1"))
    return _files(root)


def check_index(engine: Engine, root: Path) -> None:
    """Every measurement indexed once, at the file and line that hold it."""
    found = indexed(engine)
    with engine.connect() as conn:
        uids = set(conn.execute(select(measurements.c.measurement_uid)).scalars())
    assert set(found) == uids
    storage = LocalStorage(root)
    lines: dict[str, list[str]] = {}
    for uid, (key, line) in found.items():
        if key not in lines:
            lines[key] = [e.measurement_uid for e in archive.decode(storage.get(key), key)]
        assert lines[key][line - 1] == uid
    assert sum(len(v) for v in lines.values()) == len(uids)


def test_measurements_of_an_hour_that_is_over_reach_the_archive_by_themselves(
    db_url: str, tmp_path: Path,
) -> None:
    uids = submitted_hours_ago(db_url, tmp_path)
    root = tmp_path / "archive"
    server = ooni_server(db_url, tmp_path / "server.log",
                         env={**ARCHIVING, "DOWNLINK_OONI_ARCHIVE": str(root)})
    engine = create_engine(_normalise(db_url))
    try:
        state = wait_for("the archived measurements", lambda: (
            (s := task_state(server.url))["total"] == len(uids) and s))
        assert state["error"] is None and state["source"] == "ooni"
        assert state["progress"].startswith("archived until ")
        assert "due" not in state["progress"]
        page = httpx.get(f"{server.url}/consumers", timeout=10).text
        assert "ooni_archive" in page and "archived until" in page
        assert set(indexed(engine)) == set(uids)
    finally:
        server.stop()
    try:
        check_index(engine, root)
        served = _files(root)
        assert {k.split("/")[3] for k in served} >= {"IT", "IR", "CN", "US"}
        assert rebuilt(engine, tmp_path / "again") == served
    finally:
        engine.dispose()


def test_downlink_consume_archives_for_a_server_with_consumers_off(
    db_url: str, tmp_path: Path,
) -> None:
    uids = submitted_hours_ago(db_url, tmp_path)
    root = tmp_path / "archive"
    env = {**ARCHIVING, "DOWNLINK_OONI_ARCHIVE": str(root)}
    server = ooni_server(db_url, tmp_path / "server.log",
                         env={**env, "DOWNLINK_RUN_CONSUMERS": "off"})
    consume: LiveServer | None = None
    engine = create_engine(_normalise(db_url))
    try:
        time.sleep(1.0)  # the server alone archives nothing
        assert task_state(server.url)["ran_at"] is None and indexed(engine) == {}
        consume = LiveServer(db_url, command="consume", env=env,
                             log=tmp_path / "consume.log").start(timeout=180)
        # The server's /consumers shows what `downlink consume` did (from the database).
        state = wait_for("the archived measurements", lambda: (
            (s := task_state(server.url))["total"] == len(uids) and s))
        assert state["error"] is None and set(indexed(engine)) == set(uids)
    finally:
        if consume is not None:
            consume.stop()
        server.stop()
    try:
        check_index(engine, root)
    finally:
        engine.dispose()


def padded(i: int, cc: str, ts: float, pad: int) -> dict[str, Any]:
    """A measurement row of about ``pad`` bytes received at ``ts``."""
    body = orjson.dumps({"format": "json", "content": {"i": i, "pad": "x" * pad},
                         "is_verified": "u"})
    uid = mint_uid(datetime.fromtimestamp(ts, UTC), cc, "webconnectivity", body)
    return {"measurement_uid": uid, "report_id": f"r{i}", "probe_cc": cc, "probe_asn": 1,
            "test_name": "web_connectivity", "ts_reception": ts, "is_verified": "u",
            "body": body}


def loaded(db_url: str, tmp_path: Path, n: int, hours: int, pad: int) -> Engine:
    """A migrated database with ``n`` measurements over the ``hours`` hours before the
    current one."""
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine)  # at head already (a copy of the suite's migrated template)
    first = (int(time.time() // HOUR) - hours) * HOUR
    rng = random.Random(7)
    rows = [padded(i, rng.choice(("IT", "DE", "BR", "IR")), first + i * hours * HOUR / n,
                   pad + rng.randrange(pad)) for i in range(n)]
    with engine.begin() as conn:
        for part in range(0, n, 500):
            conn.execute(insert(measurements), rows[part : part + 500])
    return engine


def forget_archive(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(archive_index))
        conn.execute(delete(state).where(state.c.key == archive.NEXT_HOUR))
        conn.execute(delete(tasks_table))


def archived(engine: Engine, n: int) -> bool:
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(archive_index)).scalar_one()
        done = archive.archived_until(conn)
    return count == n and done >= hours_of(engine)[-1] + HOUR


def archive_by_hand(db_url: str, env: dict[str, str]) -> str:
    """``downlink ooni archive``: the last line it printed (its outcome)."""
    done = cli.run(["ooni", "archive", "--database-url", db_url], env=env, timeout=120)
    said = (done.stdout if done.returncode == 0 else done.stderr).strip()
    return said.splitlines()[-1] if said else ""


def test_two_processes_and_the_command_archive_each_measurement_once(
    db_url: str, tmp_path: Path,
) -> None:
    n = 3000
    engine = loaded(db_url, tmp_path, n, 4, 1500)
    root = tmp_path / "archive"
    env = {**ARCHIVING, "DOWNLINK_OONI_ARCHIVE_EVERY_S": "0.05",
           "DOWNLINK_OONI_ARCHIVE": str(root)}
    server = LiveServer(db_url, workers=2, env=env, log=tmp_path / "server.log")
    server.start(timeout=180)  # two workers scoring 3,000 measurements on a loaded machine
    outcomes: list[str] = []
    try:
        # The command races the two workers meanwhile (twice at least).
        while len(outcomes) < 2 or not archived(engine, n):
            outcomes.append(archive_by_hand(db_url, env))
    finally:
        server.stop()
    try:
        assert all(o.startswith("archived ") or "running in another process" in o
                   for o in outcomes), outcomes
        check_index(engine, root)
        with engine.connect() as conn:
            row = conn.execute(select(tasks_table)).one()
        # Every run that finished added what it archived: each hour was archived once.
        assert row.total == n and row.error is None
        assert rebuilt(engine, tmp_path / "again") == _files(root)
    finally:
        engine.dispose()


def progress(engine: Engine) -> float:
    with engine.connect() as conn:
        return archive.archived_until(conn)


def test_a_server_killed_while_archiving_converges_after_a_restart(
    db_url: str, tmp_path: Path,
) -> None:
    n = 4000
    engine = loaded(db_url, tmp_path, n, 6, 3000)
    try:
        expected = rebuilt(engine, tmp_path / "reference")
        forget_archive(engine)
        hours = hours_of(engine)
        root = tmp_path / "archive"
        # A 3 s lease: the restarted server takes the killed one's task over 3 s after.
        env = {**ARCHIVING, "DOWNLINK_OONI_ARCHIVE": str(root), "DOWNLINK_TASK_LEASE_S": "3"}
        server = LiveServer(db_url, env=env, log=tmp_path / "server.log")
        # The server archives from its start, before /-/health answers: killed as soon
        # as its first hour is marked (plus 0-0.3 s: in the middle of the next hours).
        def start() -> None:
            with contextlib.suppress(Exception):  # killed while it starts
                server.start(timeout=180)

        starting = threading.Thread(target=start, daemon=True)
        starting.start()
        wait_for("the first hour archived", lambda: progress(engine) > hours[0], 180)
        time.sleep(random.Random().uniform(0.0, 0.3))
        server.kill()
        starting.join(30)
        at_kill = progress(engine)
        assert at_kill < hours[-1] + HOUR, "archived whole before the kill: no test"
        server = LiveServer(db_url, env=env, log=tmp_path / "server.log").start(timeout=180)
        try:
            # The killed process's lease lapses (3 s), then the new one finishes.
            wait_for("every hour archived", lambda: archived(engine, n), timeout=180)
        finally:
            server.stop()
        check_index(engine, root)
        assert _files(root) == expected
    finally:
        engine.dispose()


def test_a_missing_bucket_shows_and_ingestion_goes_on(
    db_url: str, tmp_path: Path, moto: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    uids = submitted_hours_ago(db_url, tmp_path)
    env = {**ARCHIVING, **S3_ENV, "DOWNLINK_OONI_ARCHIVE": "s3://later/dl",
           "DOWNLINK_OONI_S3_ENDPOINT": moto}
    server = ooni_server(db_url, tmp_path / "server.log", env=env)
    try:
        failing = wait_for("the task's error", lambda: (
            (s := task_state(server.url))["error"] and s))
        assert "NoSuchBucket" in failing["error"] and failing["total"] == 0
        more = _submit_all(server)  # ingestion is not concerned
        assert len(more) == len(uids)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'downlink_task_failures_total{task="ooni_archive"}' in metrics
        boto3.client("s3", endpoint_url=moto).create_bucket(Bucket="later")
        # (>=: past the hour, the measurements just posted are due too.)
        done = wait_for("the archived measurements", lambda: (
            (s := task_state(server.url))["total"] >= len(uids) and s))
        assert done["error"] is None and done["failures"] == 0
        keys = [k for k in open_storage("s3://later/dl", moto).list("raw/")]
        assert keys and all(k.endswith(".jsonl.gz") for k in keys)
    finally:
        server.stop()
