"""The sources' periodic tasks: one lease holder, fenced writes, recorded outcomes."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Connection, Engine, create_engine, select

from downlink.pipeline import tasks
from downlink.settings import Settings, SettingsError
from downlink.sources.base import Source, Task, TaskContext
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.store.tables import tasks as tasks_table


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine, sources=Settings(database_url=db_url).registry)
    return engine


def _row(engine: Engine, name: str) -> dict[str, object]:
    with engine.connect() as conn:
        found = conn.execute(select(tasks_table).where(tasks_table.c.name == name)).first()
    assert found is not None
    return dict(found._mapping)


def _note(conn: Connection, value: str) -> str:
    return value


def test_one_holder_and_a_lapsed_holder_cannot_commit(engine: Engine) -> None:
    now = time.time()
    with engine.begin() as conn:
        assert tasks.claim(conn, "t", "src", "a", now, lease_s=0.5)
    with engine.begin() as conn:
        assert not tasks.claim(conn, "t", "src", "b", now + 0.1)
    with engine.begin() as conn:  # the holder's writes renew the lease
        assert tasks.fenced(conn, "t", "a", tasks.LEASE_S, _note, "a wrote") == "a wrote"
    time.sleep(0.6)  # past the first 0.5 s lease: only the renewal keeps it
    with engine.begin() as conn:
        assert not tasks.claim(conn, "t", "src", "b", time.time())
    # Once the lease lapses (a process paused or killed), another process takes it and
    # the old holder can no longer commit anything.
    later = time.time() + tasks.LEASE_S + 1
    with engine.begin() as conn:
        assert tasks.claim(conn, "t", "src", "b", later)
    with pytest.raises(tasks.TaskLost), engine.begin() as conn:
        tasks.hold(conn, "t", "a", later)
    with engine.begin() as conn:
        tasks.finish(conn, "t", "a", 5, later)  # not the holder: nothing recorded
    assert _row(engine, "t")["owner"] == "b" and _row(engine, "t")["ran_at"] is None
    with engine.begin() as conn:
        tasks.failed(conn, "t", "b", "StorageError: no bucket", later)
    row = _row(engine, "t")
    assert row["failures"] == 1 and row["error"] == "StorageError: no bucket"
    assert row["owner"] is None and row["claimed_until"] is None
    with engine.begin() as conn:
        assert tasks.claim(conn, "t", "src", "c", later)
        tasks.finish(conn, "t", "c", 7, later + 1)
    row = _row(engine, "t")
    assert (row["failures"], row["error"], row["done"], row["total"]) == (0, None, 7, 7)


def test_run_here_takes_the_lease_and_records_the_outcome(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url)
    seen: list[str] = []

    def body(ctx: TaskContext) -> int:
        seen.append(ctx.write(_note, "written"))
        return 3

    assert tasks.run_here(engine, "src", "t", settings, body, lambda n: n) == 3
    assert seen == ["written"]
    assert _row(engine, "t")["total"] == 3

    def broken(_ctx: TaskContext) -> int:
        raise RuntimeError("storage away")

    with pytest.raises(RuntimeError):
        tasks.run_here(engine, "src", "t", settings, broken, lambda n: n)
    assert _row(engine, "t")["error"] == "RuntimeError: storage away"
    with engine.begin() as conn:  # another process is running it
        assert tasks.claim(conn, "t", "src", "other", time.time())
    with pytest.raises(tasks.TaskBusy, match="running in another process"):
        tasks.run_here(engine, "src", "t", settings, body, lambda n: n)


def test_status_lists_every_declared_task(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url)
    task = Task("t", lambda _s: 60.0, lambda _ctx: 0,
                lambda _conn, _s, _now: "archived until noon")
    src = Source(name="src", title="Src", tasks=(task,))
    with engine.connect() as conn:  # never run yet
        (state,) = tasks.status(conn, [(src, task)], settings)
    assert state["ran_at"] is None and state["progress"] == "archived until noon"
    tasks.run_here(engine, "src", "t", settings, lambda _ctx: 2, lambda n: n)
    with engine.connect() as conn:
        (state,) = tasks.status(conn, [(src, task)], settings)
    assert state["done"] == 2 and state["every_s"] == 60.0 and not state["running"]


def test_the_lease_lasts_as_long_as_the_setting_says(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url, task_lease_s=2.0)
    seen: list[float] = []

    def body(ctx: TaskContext) -> int:
        seen.append(float(_row(engine, "t")["claimed_until"]) - time.time())  # type: ignore[arg-type]
        return 1

    tasks.run_here(engine, "src", "t", settings, body, lambda n: n)
    assert 0 < seen[0] <= 2.0  # the default would hold it 15 s
    with pytest.raises(SettingsError, match="DOWNLINK_TASK_LEASE_S"):
        Settings(database_url=db_url, task_lease_s=0.5)
