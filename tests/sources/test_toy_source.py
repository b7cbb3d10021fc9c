"""A source living only in the test suite plugs in without a core edit, on both databases.

``DOWNLINK_SOURCES=tests.sources.toy.source`` is the only change: a real server then
serves its ingest endpoint (open like every ingest path when tokens are on), its page
with a navigation tab, template and static file, its metric, and migrates its table
from its own Alembic branch; ``downlink purge`` applies its retention.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from sqlalchemy import create_engine

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.registry import load
from downlink.store import migrate
from downlink.store.tables import metadata as core_metadata
from downlink.testing.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
TOY = "tests.sources.toy.source"
TOKEN = {"Authorization": "Bearer secret"}


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {"DOWNLINK_SOURCES": TOY, "PYTHONPATH": path, **extra}


def test_toy_source_serves_ingest_page_static_and_metrics(db_url: str, tmp_path: Path) -> None:
    env = _env(DOWNLINK_API_TOKENS="secret", DOWNLINK_TOY_GREETING="hi there")
    server = LiveServer(db_url, env=env, log=tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            # Ingest paths stay open with tokens on; everything else needs one.
            assert http.post("/toy/items", json={"name": "first"}).status_code == 201
            bad = http.post("/toy/items", content=b"{nope")
            assert bad.status_code == 400 and "name" in bad.json()["message"]
            assert http.get("/toy.json").status_code == 401
            data = http.get("/toy.json", headers=TOKEN).json()
            assert data["greeting"] == "hi there"
            assert [i["name"] for i in data["items"]] == ["first"]
            page = http.get("/toy", headers=TOKEN)
            assert page.status_code == 200
            assert 'href="/toy" class="active">Toy</a>' in page.text
            assert "/static/sources/toy/toy.css" in page.text and "first" in page.text
            # The tab is on the core pages too.
            assert 'href="/toy"' in http.get("/records", headers=TOKEN).text
            css = http.get("/static/sources/toy/toy.css", headers=TOKEN)
            assert css.status_code == 200 and "toy-greeting" in css.text
            metrics = http.get("/metrics", headers=TOKEN).text
            assert "downlink_toy_items_total 1.0" in metrics
            assert http.get("/-/settings", headers=TOKEN).json()["sources"]["toy"] == {
                "greeting": "hi there",
                "retention_hours": 0.0,
            }
    finally:
        server.stop()


def test_toy_migrations_are_a_branch_of_their_own(empty_db_url: str) -> None:
    db_url = empty_db_url
    runner = CliRunner()
    core_only = runner.invoke(cli, ["migrate", "--database-url", db_url], env={})
    assert core_only.exit_code == 0, core_only.output
    check = runner.invoke(
        cli, ["migrate", "--check", "--database-url", db_url], env={"DOWNLINK_SOURCES": TOY}
    )
    assert check.exit_code == 1
    assert check.output.splitlines() == ["pending: toy_0001", "pending: toy_0002"]

    applied = runner.invoke(
        cli, ["migrate", "--database-url", db_url], env={"DOWNLINK_SOURCES": TOY}
    )
    assert applied.exit_code == 0, applied.output
    assert "applied 2 migration(s)" in applied.output

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            diff = migrate.schema_diff(conn, [core_metadata, *load((TOY,)).metadata()])
        assert diff == [], diff
    finally:
        engine.dispose()


def test_pending_lists_the_core_first_then_the_toy(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        todo = migrate.pending(engine, load((TOY,)))
        assert todo[0] == "0001" and todo[-2:] == ["toy_0001", "toy_0002"]
        assert todo[:-2] == migrate.pending(engine, load(()))
    finally:
        engine.dispose()


def test_purge_applies_the_toy_retention(db_url: str) -> None:
    settings = Settings(database_url=db_url, source_modules=(TOY,))
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    migrate.upgrade(engine, sources=settings.registry)
    now = time.time()
    with engine.begin() as conn:
        from tests.sources.toy.tables import toy_items

        conn.execute(
            toy_items.insert(),
            [{"name": f"old{i}", "ts_reception": now - 7200} for i in range(250)]
            + [{"name": "new", "ts_reception": now}],
        )
    engine.dispose()
    runner = CliRunner()
    env = {"DOWNLINK_SOURCES": TOY, "DOWNLINK_TOY_RETENTION_HOURS": "1"}
    dry = runner.invoke(cli, ["purge", "--dry-run", "--database-url", db_url], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 250 toy row(s)" in dry.output
    real = runner.invoke(cli, ["purge", "--database-url", db_url], env=env)
    assert real.exit_code == 0, real.output
    assert "deleted 250 toy row(s)" in real.output
    again = runner.invoke(cli, ["purge", "--database-url", db_url], env=env)
    assert "deleted 0 toy row(s)" in again.output
    kept = runner.invoke(cli, ["purge", "--database-url", db_url], env={"DOWNLINK_SOURCES": TOY})
    assert "toy" not in kept.output  # retention 0: the toy keeps everything


def test_toy_consumer_follows_two_workers_posting_concurrently(
    db_url: str, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from downlink.testing.consumers import wait_caught_up

    server = LiveServer(db_url, workers=2, env=_env(), log=tmp_path / "server.log").start()
    names = [f"n{i % 7}" for i in range(240)]
    try:
        with httpx.Client(base_url=server.url, timeout=20) as http:

            def post(name: str) -> int:
                return http.post("/toy/items", json={"name": name}).status_code

            with ThreadPoolExecutor(12) as pool:
                assert set(pool.map(post, names)) == {201}
            states = wait_caught_up(server.url, timeout=30)
            (state,) = [c for c in states if c["name"] == "toy_daily"]
            assert state["name"] == "toy_daily" and state["handled"] == len(names)
            assert state["error"] is None and state["lag_seconds"] == 0.0
            daily = http.get("/toy.json").json()["daily"]
            got = {}
            for row in daily:
                got[row["name"]] = got.get(row["name"], 0) + row["count"]
            assert got == {n: names.count(n) for n in set(names)}
            page = http.get("/consumers")
            assert page.status_code == 200 and "toy_daily" in page.text
            # The gauges are refreshed every second by each worker.
            gauge = 'downlink_consumer_lag_records{consumer="toy_daily"} 0.0'
            deadline = time.monotonic() + 10
            while gauge not in http.get("/metrics").text:
                assert time.monotonic() < deadline, "the lag gauge did not reach 0"
                time.sleep(0.2)
    finally:
        server.stop()
