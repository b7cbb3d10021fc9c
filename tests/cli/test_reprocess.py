"""downlink reprocess: rebuilds lost derived data identically, resumes, refuses bad input."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, update

from downlink.cli.main import cli
from downlink.pipeline import reprocess
from downlink.pipeline.consumers import bind, ensure_all, step
from downlink.pipeline.jobkinds import run_step
from downlink.settings import Settings
from downlink.store import jobs, migrate
from downlink.store.engine import make_engine
from downlink.store.tables import jobs as jobs_table
from tests.sources.toy.source import daily
from tests.sources.toy.tables import toy_daily, toy_items

TOY = "tests.sources.toy.source"
ENV = {"DOWNLINK_SOURCES": TOY}
DAY = 86400.0
RANGE = ["--since", "2026-01-01", "--until", "2026-01-02"]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


@pytest.fixture
def filled(db_url: str) -> tuple[str, float]:
    """A database with toy items over three days, all consumed; returns (url, day 0)."""
    settings = Settings(database_url=db_url, source_modules=(TOY,))
    engine = make_engine(settings, writer=True)
    migrate.upgrade(engine, sources=settings.registry)
    day0 = (time.time() // DAY - 10) * DAY
    rows = [
        {"name": f"n{i % 3}", "ts_reception": day0 + (i % 3) * DAY + i}
        for i in range(2500)  # more than one consumer batch
    ]
    # The toy's consumer (built-in sources bring consumers of their own).
    (bound,) = [b for b in bind(settings.registry) if b.name == "toy_daily"]
    with engine.begin() as conn:
        conn.execute(toy_items.insert(), rows)
        ensure_all(conn, [bound])
    while True:
        with engine.begin() as conn:
            if not step(conn, bound):
                break
    engine.dispose()
    return db_url, day0


def _daily(db_url: str) -> list[dict[str, Any]]:
    engine = make_engine(Settings(database_url=db_url))
    try:
        with engine.connect() as conn:
            return daily(conn)
    finally:
        engine.dispose()


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["reprocess", *args], env=ENV)


def test_reprocess_restores_deleted_derived_data_identically(filled: tuple[str, float]) -> None:
    db_url, day0 = filled
    before = _daily(db_url)
    assert sum(r["count"] for r in before) == 2500
    engine = make_engine(Settings(database_url=db_url))
    with engine.begin() as conn:
        conn.execute(delete(toy_daily))
    engine.dispose()
    since, until = _day(day0), _day(day0 + 2 * DAY)
    args = ["--source", "toy", "--since", since, "--until", until, "--database-url", db_url]
    dry = _run(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would reprocess 2500 toy_items row(s) through toy_daily" in dry.output
    assert _daily(db_url) == []  # a dry run changes nothing
    first = _run(*args)
    assert first.exit_code == 0, first.output
    assert "reprocessed 2500 row(s) through toy_daily" in first.output
    assert _daily(db_url) == before
    again = _run(*args, "--consumer", "toy_daily")
    assert again.exit_code == 0, again.output
    assert _daily(db_url) == before


def test_reprocess_of_one_day_leaves_the_others(filled: tuple[str, float]) -> None:
    db_url, day0 = filled
    before = _daily(db_url)
    day1 = _day(day0 + DAY)
    out = _run("--source", "toy", "--since", day1, "--until", day1, "--database-url", db_url)
    assert out.exit_code == 0, out.output
    assert "reprocessed 833 row(s)" in out.output
    assert _daily(db_url) == before


def test_an_interrupted_job_resumes_where_it_stopped(filled: tuple[str, float]) -> None:
    db_url, day0 = filled
    before = _daily(db_url)
    settings = Settings(database_url=db_url, source_modules=(TOY,))
    bounds = bind(settings.registry)
    kind = reprocess.job_kind(bounds)
    params = reprocess.plan("toy", "toy_daily", *(datetime.fromtimestamp(t, UTC).date()
                                                  for t in (day0, day0 + 2 * DAY)))
    engine = make_engine(settings, writer=True)
    with engine.begin() as conn:
        job_id = reprocess.find_or_enqueue(conn, params)
        job = jobs.claim(conn, (kind.kind,), "dead-process", 60.0, job_id=job_id)
        assert job is not None
    for _ in range(2):  # the reset, then one chunk of 2000
        with engine.begin() as conn:
            assert run_step(conn, kind, job_id, "dead-process")
    with engine.begin() as conn:  # the process died: its heartbeat goes stale
        conn.execute(update(jobs_table).values(heartbeat=time.time() - 600))
        assert jobs.get(conn, job_id)["done"] == 2000  # type: ignore[index]
    engine.dispose()
    out = _run("--source", "toy", "--since", _day(day0), "--until", _day(day0 + 2 * DAY),
               "--database-url", db_url)
    assert out.exit_code == 0, out.output
    assert f"job {job_id}" in out.output and "reprocessed 2500 row(s)" in out.output
    assert _daily(db_url) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nope", *RANGE], "no source 'nope'"),
        (["--source", "toy", "--consumer", "x", *RANGE], "has no consumer 'x' (it has: toy_daily)"),
        (["--source", "toy", "--since", "2026-01-03", "--until", "2026-01-02"], "before --since"),
        (["--source", "toy", "--since", "yesterday", "--until", "2026-01-02"], "yesterday"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str, tmp_path: Any) -> None:
    out = _run(*args, "--database-url", f"sqlite:///{tmp_path / 'x.db'}")
    assert out.exit_code == 2, out.output
    assert message in out.output


def test_an_unmigrated_database_is_named(tmp_path: Any) -> None:
    out = _run("--source", "toy", "--since", "2026-01-01", "--until", "2026-01-01",
               "--database-url", f"sqlite:///{tmp_path / 'x.db'}")
    assert out.exit_code == 1
    assert "run `downlink migrate`" in out.output
