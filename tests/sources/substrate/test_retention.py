"""Retention purge: only expired, non-audit substrate records; bounded batches; the CLI."""

from __future__ import annotations

import time
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.substrate.connections import mark_disconnected
from downlink.sources.substrate.retention import purge_connections, purge_records_batch
from downlink.sources.substrate.tables import node_connections, node_disconnects
from downlink.sources.substrate.wire import NodeMessage, parse_frame, to_row
from downlink.store.database import Store
from downlink.store.retention import count_source, cutoff_for, purge_source
from downlink.store.tables import records
from downlink.testing.consumers import catch_up

HOUR = 3600.0


def _rows(conn_id: str, n: int, *, received: float, audit: bool, start: int = 0) -> list[Any]:
    message = parse_frame('{"msg": "system.interval", "ts": "2021-01-13T12:38:25Z"}')
    assert isinstance(message, NodeMessage)
    out = []
    for seq in range(start, start + n):
        row = to_row(
            message,
            connection=conn_id,
            seq=seq,
            peer_id="P",
            ip="127.0.0.1:1",
            audit=audit,
            received_at=received,
        )
        out.append(row)
    return out


def _count(store: Store, **where: Any) -> int:
    stmt = select(func.count()).select_from(records)
    for column, value in where.items():
        stmt = stmt.where(records.c[column] == value)
    return int(store.run(lambda c: c.execute(stmt).scalar_one()))


@pytest.fixture
def seeded(store: Store) -> Store:
    now = time.time()
    old, new = now - 10 * HOUR, now - 60

    async def fill() -> None:
        await store.write(_rows("a" * 32, 7, received=old, audit=False))
        await store.write(_rows("b" * 32, 4, received=old, audit=True))
        await store.write(_rows("c" * 32, 5, received=new, audit=False))
        other = _rows("d" * 32, 3, received=old, audit=False)
        for row in other:
            row["source"] = "clearlinux"
            row["attrs"] = None
        await store.write(other)

    import anyio

    anyio.run(fill)
    catch_up(store)  # the connection rows, after the ack
    store.run_write(mark_disconnected, "a" * 32, False, old)
    store.run_write(mark_disconnected, "b" * 32, True, old)
    return store


def _source(store: Store) -> Any:
    return store.settings.registry.get("substrate")


def _expired_count(conn: Any, cutoff: float) -> int:
    from downlink.sources.substrate.retention import expired

    return int(conn.execute(select(func.count()).where(expired(cutoff))).scalar_one())


def test_counts_and_purges_only_expired_non_audit_substrate(seeded: Store) -> None:
    cutoff = cutoff_for(3)
    assert seeded.run(_expired_count, cutoff) == 7
    done = [seeded.run_write(purge_records_batch, cutoff, 3) for _ in range(4)]
    assert done == [3, 3, 1, 0]
    assert _count(seeded, source="substrate") == 4 + 5
    assert _count(seeded, source="clearlinux") == 3
    assert seeded.run_write(purge_connections, cutoff) == 2  # a's row and its close
    left = seeded.run(lambda c: sorted(c.execute(select(node_connections.c.connection)).scalars()))
    assert left == ["b" * 32, "c" * 32]
    closes = seeded.run(lambda c: list(c.execute(select(node_disconnects.c.connection)).scalars()))
    assert closes == ["b" * 32]  # an audit connection's close stays


def test_purge_loops_in_batches_and_dry_run_deletes_nothing(seeded: Store) -> None:
    cutoff = cutoff_for(3)
    settings = seeded.settings.replace(sources={"substrate": {"purge_batch": 2}})
    source = _source(seeded)

    def rolled_back(conn: Any) -> int:
        with conn.begin_nested() as tx:
            try:
                return count_source(conn, settings, source, cutoff)
            finally:
                tx.rollback()

    assert seeded.run(rolled_back) == 7
    assert _count(seeded, source="substrate") == 16
    calls: list[int] = []

    def write(fn: Any, *args: Any) -> int:
        calls.append(seeded.run_write(fn, *args))
        return calls[-1]

    assert purge_source(write, settings, source, cutoff) == 7
    assert calls == [2, 2, 2, 1, 0]  # one short transaction each, at most the batch
    assert _count(seeded, source="substrate") == 9


def test_purged_connection_never_breaks_a_later_batch(settings: Settings) -> None:
    # The reference deleted connection rows without logs yet; the next batch then failed
    # its foreign key and lost every row in it. Here the writer recreates the row.
    store = Store(settings)
    store.start()
    try:
        import anyio

        conn_id = "e" * 32
        anyio.run(store.write, _rows(conn_id, 2, received=time.time() - 10 * HOUR, audit=False))
        catch_up(store)
        assert store.run_write(purge_connections, cutoff_for(1)) == 1
        stored = anyio.run(
            store.write, _rows(conn_id, 3, received=time.time(), audit=False, start=2)
        )
        assert len(stored) == 3
        catch_up(store)
        messages = store.run(
            lambda c: c.execute(
                select(node_connections.c.messages).where(node_connections.c.connection == conn_id)
            ).scalar_one()
        )
        assert messages == 3
    finally:
        store.close()


def test_cli_purge_dry_run_then_real(seeded: Store, db_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": db_url}
    hours = ["--source", "substrate", "--older-than-hours"]
    dry = runner.invoke(cli, ["purge", "--dry-run", *hours, "3"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 7 substrate row(s) older than 3 h" in dry.output
    assert _count(seeded, source="substrate") == 16
    real = runner.invoke(cli, ["purge", *hours, "3"], env=env)
    assert real.exit_code == 0, real.output
    assert "deleted 7 substrate row(s)" in real.output
    assert _count(seeded, source="substrate") == 9
    assert seeded.run(lambda c: c.execute(select(func.count()).select_from(
        node_connections)).scalar_one()) == 2
    everything = runner.invoke(cli, ["purge", *hours, "0"], env=env)
    assert "deleted 5 substrate row(s)" in everything.output
    assert _count(seeded, source="substrate") == 4
    # Without --older-than-hours each source's own retention applies (substrate: 3 h).
    default = runner.invoke(cli, ["purge"], env=env)
    assert default.exit_code == 0, default.output
    assert "deleted 0 substrate row(s) older than 3 h" in default.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than-hours", "3"], "name the source(s) with --source"),
        (["--source", "nosuch"], "no source 'nosuch' with a retention"),
    ],
)
def test_cli_purge_refuses_what_it_cannot_do(args: list[str], message: str, tmp_path: Any) -> None:
    result = CliRunner().invoke(
        cli, ["purge", *args], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    )
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("value", ["-1", "abc", "nan"])
def test_cli_purge_refuses_bad_hours(value: str, tmp_path: Any) -> None:
    result = CliRunner().invoke(
        cli,
        ["purge", "--source", "substrate", "--older-than-hours", value],
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    assert result.exit_code == 2
    assert "--older-than-hours" in result.output



def test_a_record_stored_after_purging_the_newest_is_not_behind_a_consumer(
    store: Store,
) -> None:
    # SQLite hands the largest id out again once its row is deleted; the purge lowers
    # the cursors of consumers following `records` so the next record is still ahead.
    import anyio

    from downlink.store import cursors, follow

    anyio.run(store.write, _rows("f" * 32, 3, received=time.time() - 10 * HOUR, audit=False))
    newest = store.run(lambda c: c.execute(select(func.max(records.c.id))).scalar_one())
    store.run_write(cursors.ensure, "watcher", "records")
    store.run_write(cursors.set_cursor, "watcher", follow.Cursor(0, newest))
    assert store.run_write(purge_records_batch, cutoff_for(1), 10) == 3
    anyio.run(store.write, _rows("f" * 32, 1, received=time.time(), audit=False, start=3))
    cursor = store.run(cursors.read, "watcher")
    assert cursor is not None
    found = store.run(follow.read_after, records, cursor, 10)
    assert [r["machine_id"] for r in found.rows] == [_rows("f" * 32, 1, received=0,
                                                         audit=False)[0]["machine_id"]]
