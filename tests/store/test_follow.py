"""Following a table in commit order: concurrent writers, exactly once, nothing skipped."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from downlink.pipeline.consumers import Bound, bind, ensure_all, step
from downlink.settings import Settings
from downlink.store import follow, migrate
from downlink.store.engine import make_engine
from tests.sources.toy.source import daily
from tests.sources.toy.tables import toy_items

TOY = "tests.sources.toy.source"


@pytest.fixture
def toy_settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, source_modules=(TOY,))


@pytest.fixture
def engine(toy_settings: Settings) -> Iterator[Engine]:
    read = make_engine(toy_settings)
    migrate.upgrade(read, sources=toy_settings.registry)
    read.dispose()
    writer = make_engine(toy_settings, writer=True)
    try:
        yield writer
    finally:
        writer.dispose()


@pytest.fixture
def bound(toy_settings: Settings) -> Bound:
    (found,) = [b for b in bind(toy_settings.registry) if b.source == "toy"]
    return found


def _catch_up(engine: Engine, bound: Bound) -> int:
    total = 0
    while True:
        with engine.begin() as conn:
            n = step(conn, bound)
        if not n:
            return total
        total += n


def test_a_row_committed_late_with_a_smaller_id_is_not_skipped(
    engine: Engine, bound: Bound, db_kind: str
) -> None:
    if db_kind != "postgresql":
        pytest.skip("SQLite commits one transaction at a time: ids are in commit order")
    with engine.begin() as conn:
        ensure_all(conn, [bound])
    slow = engine.connect()
    slow_tx = slow.begin()
    slow.execute(toy_items.insert().values(name="slow", ts_reception=time.time()))
    with engine.begin() as conn:
        conn.execute(toy_items.insert().values(name="fast", ts_reception=time.time()))
    # The fast row (larger id) is committed, the slow one (smaller id) is not: a
    # consumer following by id would take the fast one and later skip the slow one.
    assert _catch_up(engine, bound) == 0
    slow_tx.commit()
    slow.close()
    assert _catch_up(engine, bound) == 2
    with engine.connect() as conn:
        assert {(r["name"], r["count"]) for r in daily(conn)} == {("slow", 1), ("fast", 1)}


def test_concurrent_writers_and_consumers_apply_every_row_exactly_once(
    engine: Engine, bound: Bound
) -> None:
    writers, transactions = 4, 30
    done = threading.Event()
    errors: list[BaseException] = []
    with engine.begin() as conn:
        ensure_all(conn, [bound])

    def write(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(transactions):
                with engine.begin() as conn:
                    rows = [{"name": f"n{rng.randrange(5)}", "ts_reception": time.time()}
                            for _ in range(rng.randrange(1, 4))]
                    conn.execute(toy_items.insert(), rows)
                    # Hold the transaction open a little: on PostgreSQL commits then
                    # land out of id order.
                    time.sleep(rng.random() * 0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def consume() -> None:
        try:
            while not done.is_set():
                with engine.begin() as conn:
                    n = step(conn, bound)
                if not n:
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    # Two consumer threads stand for two server processes running the same consumer.
    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for t in [*threads, *consumers]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in consumers:
        t.join()
    assert not errors, errors
    _catch_up(engine, bound)
    with engine.connect() as conn:
        stored = Counter(
            {name: n for name, n in conn.execute(
                select(toy_items.c.name, func.count()).group_by(toy_items.c.name)
            )}
        )
        derived: Counter[str] = Counter()
        for row in daily(conn):
            derived[row["name"]] += row["count"]
        total = conn.execute(select(func.count()).select_from(toy_items)).scalar_one()
        lag = follow.lag(conn, toy_items, "ts_reception",
                         follow.Cursor(*_cursor(conn, bound)))
    assert derived == stored
    assert sum(stored.values()) == total
    assert lag == (0, None)


def _cursor(conn: object, bound: Bound) -> tuple[int, int]:
    from downlink.store import cursors

    found = cursors.read(conn, bound.name)  # type: ignore[arg-type]
    assert found is not None
    return found
