"""The consumer runner: catches up, retries a failing consumer with backoff, shows lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest

from downlink.metrics import Metrics
from downlink.pipeline.consumers import Bound, ConsumerRunner, bind, status
from downlink.settings import Settings
from downlink.sources.base import LogRecord
from downlink.store.database import Store
from tests.sources.toy.source import count_daily, daily
from tests.sources.toy.tables import toy_items

TOY = "tests.sources.toy.source"


@pytest.fixture
def toy_store(db_url: str) -> Store:
    settings = Settings(database_url=db_url, batch_wait_ms=1.0, source_modules=(TOY,))
    store = Store(settings, Metrics(settings.registry))
    store.migrate()
    return store


def _add(store: Store, names: Sequence[str], at: float | None = None) -> None:
    ts = time.time() if at is None else at
    store.run_write(
        lambda conn: conn.execute(
            toy_items.insert(), [{"name": n, "ts_reception": ts} for n in names]
        )
    )


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_runner_catches_up_and_reports_lag(toy_store: Store) -> None:
    (bound,) = [b for b in bind(toy_store.settings.registry) if b.source == "toy"]
    _add(toy_store, ["a", "b", "a"], at=time.time() - 30)
    with toy_store.engine.connect() as conn:
        assert status(conn, [bound])[0]["lag_records"] == 3

    async def run() -> None:
        toy_store.start(run_migrations=False)
        runner = ConsumerRunner(toy_store, [bound], poll_s=0.02)
        runner.start()
        try:
            await _until(lambda: toy_store.run(daily) != [])
            await _until(
                lambda: toy_store.metrics.consumer_lag_records.labels("toy_daily")._value.get()
                == 0
            )
        finally:
            await runner.stop()
            toy_store.close()

    asyncio.run(run())
    got = {(r["name"], r["count"]) for r in toy_store.run(daily)}
    assert got == {("a", 2), ("b", 1)}
    with toy_store.engine.connect() as conn:
        (entry,) = status(conn, [bound])
    assert entry["handled"] == 3 and entry["lag_records"] == 0 and entry["error"] is None
    toy_store.engine.dispose()


def test_a_watching_runner_reports_lag_and_handles_nothing(toy_store: Store) -> None:
    """``handle=False`` (serve with DOWNLINK_RUN_CONSUMERS=off): gauges and freshness
    from the cursors, no batch handled, no cursor row written."""
    (bound,) = [b for b in bind(toy_store.settings.registry) if b.source == "toy"]
    _add(toy_store, ["a", "b"], at=time.time() - 30)

    async def run() -> ConsumerRunner:
        toy_store.start(run_migrations=False)
        runner = ConsumerRunner(toy_store, [bound], poll_s=0.02, handle=False)
        assert runner.poll_s == 1.0  # it only refreshes the lag, once a second
        runner.start()
        try:
            await _until(lambda: runner.latest_at is not None)
            assert runner.alive()
        finally:
            await runner.stop()
            toy_store.close()
        return runner

    runner = asyncio.run(run())
    fresh = runner.freshness(["toy_daily"])
    assert fresh is not None and fresh["lag_records"] == 2 and fresh["lag_seconds"] >= 30
    assert toy_store.metrics.consumer_lag_records.labels("toy_daily")._value.get() == 2
    assert toy_store.run(daily) == []
    with toy_store.engine.connect() as conn:
        (entry,) = status(conn, [bound])
    assert entry["handled"] == 0 and entry["updated_at"] is None  # no cursor row
    toy_store.engine.dispose()


def test_a_failing_consumer_retries_with_backoff_and_shows_its_error(toy_store: Store) -> None:
    (toy,) = [b for b in bind(toy_store.settings.registry) if b.source == "toy"]
    broken = {"on": True}
    seen: list[int] = []

    def flaky(conn: object, batch: Sequence[LogRecord]) -> None:
        if broken["on"]:
            raise ValueError("cannot handle item")
        seen.extend(r.seq for r in batch)
        count_daily(conn, batch)  # type: ignore[arg-type]

    bound = Bound(toy.source, replace(toy.consumer, handle=flaky), toy.table)
    _add(toy_store, ["x"])

    async def run() -> None:
        toy_store.start(run_migrations=False)
        runner = ConsumerRunner(toy_store, [bound], poll_s=0.02, retry_max_s=0.5)
        runner.start()
        try:
            def failing() -> bool:
                with toy_store.engine.connect() as conn:
                    return bool(status(conn, [bound])[0]["failures"] >= 2)

            await _until(failing)
            # Ingestion goes on while the consumer fails.
            _add(toy_store, ["y", "z"])
            with toy_store.engine.connect() as conn:
                (entry,) = status(conn, [bound])
            assert entry["error"] == "ValueError: cannot handle item"
            assert entry["lag_records"] == 3 and entry["handled"] == 0
            assert entry["retry_at"] is not None
            broken["on"] = False
            await _until(lambda: len(seen) == 3)
        finally:
            await runner.stop()
            toy_store.close()

    asyncio.run(run())
    with toy_store.engine.connect() as conn:
        (entry,) = status(conn, [bound])
    assert entry["error"] is None and entry["failures"] == 0 and entry["handled"] == 3
    assert sorted(seen) == seen  # in commit order, each once
    assert {(r["name"], r["count"]) for r in toy_store.run(daily)} == {
        ("x", 1), ("y", 1), ("z", 1)
    }
    failures = toy_store.metrics.consumer_failures.labels("toy_daily")._value.get()
    assert failures >= 2
    toy_store.engine.dispose()


def test_a_consumer_of_an_unknown_table_is_refused() -> None:
    from downlink.sources.base import Consumer, Source
    from downlink.sources.registry import SourceError, check

    sources = check([Source("a", "A", consumers=(Consumer("a_c", "nope", count_daily),))])
    with pytest.raises(SourceError, match="follows 'nope'"):
        bind(sources)
