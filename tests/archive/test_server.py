"""The server keeps the raw archive itself: no command, SIGKILL-safe, S3 failures shown.

On SQLite and PostgreSQL, against a real ``downlink serve``: items posted over HTTP
appear in the archive (open segments, then the closed day) without running any
command, while a missing bucket shows as the archive consumer's error on
``/consumers`` and ingestion goes on; a server SIGKILLed at a random moment while it
archives leaves, once restarted, the same bytes as ``downlink archive`` in one go.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import delete, select

from downlink.archive import days
from downlink.archive.consumer import archiving
from downlink.archive.storage import open_storage
from downlink.settings import Settings
from downlink.store.tables import archive_days, consumers
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from downlink.testing.polling import wait_for
from tests.archive.test_days import DAY0, S3_ENV, TOY, run, snapshot, toy_engine
from tests.sources.ooni.test_archive import moto  # noqa: F401 - the S3 server fixture

FAST = {
    "DOWNLINK_SOURCES": TOY,
    "DOWNLINK_ARCHIVE_LINGER_S": "0",
    "DOWNLINK_ARCHIVE_GRACE_S": "0",
    "DOWNLINK_ARCHIVE_CLOSE_S": "0.2",
    "DOWNLINK_CONSUMER_RETRY_MAX_S": "1",
}


def archive_consumer(url: str) -> dict[str, Any]:
    states = httpx.get(f"{url}/consumers.json", timeout=10).json()["consumers"]
    return {c["name"]: c for c in states}


def test_posted_items_reach_s3_and_a_failing_bucket_shows_and_recovers(
    db_url: str, tmp_path: Path, moto: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    env = {**FAST, **S3_ENV, "DOWNLINK_ARCHIVE": "s3://later/dl",
           "DOWNLINK_ARCHIVE_S3_ENDPOINT": moto}
    server = LiveServer(db_url, env=env, log=tmp_path / "server.log").start()
    try:
        now = time.time()
        posted = [{"name": f"old{i}", "ts": DAY0 + i * 100.0} for i in range(10)]
        posted += [{"name": f"new{i}", "ts": now} for i in range(5)]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for item in posted:
                assert http.post("/toy/items", json=item).status_code == 201
        # No bucket yet: the archive consumer fails and says why; the others go on.
        state = wait_for("the archive consumer's error", lambda: (
            (s := archive_consumer(server.url))["archive_toy_items"]["error"] and s))
        assert "NoSuchBucket" in state["archive_toy_items"]["error"]
        assert state["archive_toy_items"]["lag_records"] == 15
        wait_for("the toy consumer", lambda: (
            archive_consumer(server.url)["toy_daily"]["lag_records"] == 0))

        boto3.client("s3", endpoint_url=moto).create_bucket(Bucket="later")
        storage = open_storage("s3://later/dl", moto)
        wait_caught_up(server.url, timeout=60)
        assert archive_consumer(server.url)["archive_toy_items"]["error"] is None
        wait_for("the closed day", lambda: "toy/items/20261120/done.json" in set(
            storage.list("toy/items/20261120/")))
        settings = Settings(database_url=db_url, source_modules=(TOY,),
                            archive="s3://later/dl", archive_s3_endpoint=moto)
        found = archiving(settings)
        assert found is not None
        bound = next(b for b in found.bounds if b.source == "toy")
        old = [r for rows in days.rows_between(storage, bound, DAY0, DAY0 + 86400)
               for r in rows]
        assert [r["name"] for r in old] == [f"old{i}" for i in range(10)]
        assert not [k for k in storage.list("toy/items/20261120/") if "/open/" in k]
        # Today's items are in open segments until the day is over.
        today = days.day_start(days.day_of(now))
        new = [r for rows in days.rows_between(storage, bound, today, today + 86400)
               for r in rows]
        assert sorted(r["name"] for r in new) == [f"new{i}" for i in range(5)]
    finally:
        server.stop()


def test_sigkill_while_archiving_then_restart_gives_the_same_bytes(
    db_url: str, tmp_path: Path,
) -> None:
    engine = toy_engine(db_url, 600, 432.0)  # three days
    reference = tmp_path / "reference"
    try:
        run(["archive", "--database-url", db_url],
            {"DOWNLINK_SOURCES": TOY, "DOWNLINK_ARCHIVE": str(reference),
             "DOWNLINK_ARCHIVE_BATCH_MAX": "37"})
        expected = snapshot(open_storage(str(reference)), "toy/")
        assert len(expected) == 6
        with engine.begin() as conn:  # the same database, archived again by a server
            conn.execute(delete(consumers).where(consumers.c.name == "archive_toy_items"))
            conn.execute(delete(archive_days))

        root = tmp_path / "served"
        env = {**FAST, "DOWNLINK_ARCHIVE": str(root), "DOWNLINK_ARCHIVE_BATCH_MAX": "7"}
        storage = open_storage(str(root))
        # Killed at a random moment while it stages (0.05-0.8 s in, 600 rows in batches
        # of 7 take seconds here) or closes; then restarted until every day is closed.
        server = LiveServer(db_url, env=env, log=tmp_path / "server.log").start()
        time.sleep(random.Random().uniform(0.05, 0.8))
        server.kill()
        server = LiveServer(db_url, env=env, log=tmp_path / "server.log").start()
        try:
            def complete() -> bool:
                with engine.connect() as conn:
                    counts = list(conn.execute(select(archive_days.c.staged,
                                                      archive_days.c.closed)))
                return len(counts) == 3 and all(s == c == 200 for s, c in counts)

            wait_for("every day closed", complete, timeout=120)
        finally:
            server.stop()
        assert snapshot(storage, "toy/") == expected
    finally:
        engine.dispose()
