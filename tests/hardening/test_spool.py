"""The local durable spool: accept while the database is down or locked, drain in order.

PostgreSQL is really stopped (``pg_ctl stop`` on a cluster of the test's own) and
started again; SQLite is really locked by another connection holding its write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, select

from downlink.app import create_app
from downlink.settings import Settings
from downlink.store.envelope import Envelope, wrap
from downlink.store.spool import Drainer, Spool, SpoolFull
from downlink.store.tables import records
from downlink.testing.postgres import TempPostgres
from tests.hardening.records import v2_headers, v3_record


def _post(client: TestClient, record: dict[str, Any]) -> Any:
    return client.post("/v2/collector", content=record["payload"], headers=v2_headers(record))


def _stored_payloads(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(records.c.payload).order_by(records.c.id)).scalars()
            return list(rows)
    finally:
        engine.dispose()


def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def own_postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL cluster this test may stop and start (fsync on, as in production)."""
    pg = TempPostgres(fsync=True).start()
    try:
        yield pg
    finally:
        pg.stop()


def _accepts_during_outage(client: TestClient, count: int) -> list[str]:
    payloads = []
    for i in range(count):
        record = v3_record(payload=f"during-{i}")
        resp = _post(client, record)
        assert resp.status_code == 201, resp.text
        assert resp.json()["id"] is None  # spooled: no database id yet
        payloads.append(record["payload"])
    return payloads


def test_postgres_down_records_spooled_and_drained_in_order(
    own_postgres: TempPostgres, tmp_path: Path
) -> None:
    url = own_postgres.create_database("spool")
    settings = Settings(database_url=url, batch_wait_ms=1.0, spool_dir=str(tmp_path / "spool"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        before = v3_record(payload="before")
        assert _post(client, before).status_code == 201
        own_postgres.pause()
        try:
            during = _accepts_during_outage(client, 20)
            store = client.app.state.store  # type: ignore[attr-defined]
            assert store.spool.pending() == 20
        finally:
            own_postgres.resume()
        after = v3_record(payload="after")
        assert _post(client, after).status_code == 201  # queued behind the spool
        _wait_for(lambda: store.spool.pending() == 0)
        payloads = _stored_payloads(url)
    assert payloads == ["before", *during, "after"]


def test_retransmission_of_a_spooled_record_is_stored_once(
    own_postgres: TempPostgres, tmp_path: Path
) -> None:
    url = own_postgres.create_database("dups")
    settings = Settings(database_url=url, batch_wait_ms=1.0, spool_dir=str(tmp_path / "spool"))
    record = v3_record(payload="sent twice")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        own_postgres.pause()
        try:
            assert _post(client, record).status_code == 201
            assert _post(client, record).status_code == 201  # the client retried
        finally:
            own_postgres.resume()
        store = client.app.state.store  # type: ignore[attr-defined]
        _wait_for(lambda: store.spool.pending() == 0)
    assert _stored_payloads(url) == ["sent twice"]


def test_sqlite_locked_records_spooled_and_drained(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    settings = Settings(database_url=url, batch_wait_ms=1.0, spool_dir=str(tmp_path / "spool"))
    app = create_app(settings)
    store = app.state.store

    # Production waits 30 s for a lock; the test only wants to see the spool take over.
    @event.listens_for(store.write_engine, "connect")
    def _short_busy(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert _post(client, v3_record(payload="before")).status_code == 201
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            during = _accepts_during_outage(client, 5)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        _wait_for(lambda: store.spool.pending() == 0)
    assert _stored_payloads(url) == ["before", *during]


def test_full_spool_answers_503(own_postgres: TempPostgres, tmp_path: Path) -> None:
    url = own_postgres.create_database("full")
    settings = Settings(database_url=url, batch_wait_ms=1.0,
                        spool_dir=str(tmp_path / "spool"), spool_max_bytes=3000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        own_postgres.pause()
        try:
            codes = [_post(client, v3_record(payload="x" * 500)).status_code for _ in range(6)]
        finally:
            own_postgres.resume()
        assert codes[0] == 201
        assert codes[-1] == 503
        refused = _post(client, v3_record(payload="x" * 5000))
        assert refused.status_code in (201, 503)
        if refused.status_code == 503:
            assert refused.json()["message"].startswith("Store unavailable")
            assert refused.headers["retry-after"]
        store = client.app.state.store  # type: ignore[attr-defined]
        _wait_for(lambda: store.spool.pending() == 0)
    assert len(_stored_payloads(url)) == codes.count(201) + (refused.status_code == 201)


def test_without_spool_dir_outage_is_503(own_postgres: TempPostgres) -> None:
    url = own_postgres.create_database("nospool")
    with TestClient(create_app(Settings(database_url=url)),
                    raise_server_exceptions=False) as client:
        own_postgres.pause()
        try:
            resp = _post(client, v3_record())
        finally:
            own_postgres.resume()
        assert resp.status_code == 503


def test_spool_is_bounded_fsynced_and_crash_safe(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    rows = [{"payload": f"r{i}", "dedup_key": None} for i in range(5)]
    out = spool.append("records", wrap(rows))
    # keys given to keyless rows
    assert all(r.row["dedup_key"] and r.id is None and r.spooled for r in out)
    assert spool.pending() == 5 and spool.active
    assert spool._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(SpoolFull):
        spool.append("records", [Envelope({"payload": "x" * 20_000})])
    assert spool.pending() == 5  # a refused append leaves nothing behind

    committed: list[list[str]] = []

    def commit_then_crash(sink: str, batch: list[Envelope]) -> list[Envelope]:
        committed.append([r.row["dedup_key"] for r in batch])
        raise RuntimeError("crash after the database commit, before the spool delete")

    with pytest.raises(RuntimeError):
        Drainer(spool, commit_then_crash, chunk=2).drain()
    assert spool.pending() == 5  # nothing removed: it will be drained again ...
    spool.close()

    reopened = Spool(tmp_path, max_bytes=10_000)
    assert reopened.active  # ... also after a restart
    seen: list[str] = []

    def commit(sink: str, batch: list[Envelope]) -> list[Envelope]:
        assert sink == "records"
        seen.extend(r.row["payload"] for r in batch)
        return batch

    Drainer(reopened, commit, chunk=2).drain()
    assert seen == [f"r{i}" for i in range(5)]  # in order
    assert reopened.pending() == 0 and not reopened.active
    # the re-drained rows carry the same dedup keys, so the store skips the ones it has
    assert committed[0] == [r.row["dedup_key"] for r in out[:2]]


def test_a_refused_row_is_set_aside_and_the_rest_drain(tmp_path: Path) -> None:
    from sqlalchemy.exc import OperationalError

    spool = Spool(tmp_path, max_bytes=100_000)
    spool.append("records", [Envelope({"payload": p}) for p in ("a", "poison", "b", "c")])
    stored: list[str] = []
    down = [True]

    def commit(sink: str, batch: list[Envelope]) -> list[Envelope]:
        if down[0]:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        out = []
        for r in batch:
            if r.row["payload"] == "poison":  # as refusals.store_items marks a refused row
                out.append(r.refusal("refused", "value out of range"))
            else:
                stored.append(r.row["payload"])
                out.append(r.outcome(r.row, "added"))
        return out

    drainer = Drainer(spool, commit)
    with pytest.raises(OperationalError):
        drainer.drain()
    assert spool.pending() == 4 and stored == []  # unreachable: nothing set aside
    down[0] = False
    assert drainer.drain() == 3
    assert stored == ["a", "b", "c"]
    assert spool.pending() == 0
    [aside] = spool.refused()
    assert aside.row["payload"] == "poison" and "out of range" in aside.error


def test_items_of_several_sinks_drain_in_order_each_through_its_sink(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100_000)
    spool.append("records", [Envelope({"payload": "r1"})])
    spool.append("fuelstats.action_logs", [Envelope({"external_id": 1}),
                                           Envelope({"external_id": 2})])
    spool.append("records", [Envelope({"payload": "r2"})])
    runs: list[tuple[str, list[Any]]] = []

    def commit(sink: str, batch: list[Envelope]) -> list[Envelope]:
        runs.append((sink, [dict(r.row) for r in batch]))
        return [r.outcome(r.row, "added") for r in batch]

    assert Drainer(spool, commit).drain() == 4
    assert [sink for sink, _ in runs] == ["records", "fuelstats.action_logs", "records"]
    assert [r["external_id"] for r in runs[1][1]] == [1, 2]
    assert runs[2][1][0]["payload"] == "r2"
    assert runs[0][1][0]["dedup_key"]  # records get a key; other sinks' rows as sent
    assert "dedup_key" not in runs[1][1][0]
    assert spool.pending() == 0
    # A plain row (a spool written before sinks) is read back as a record.
    assert spool._conn.execute("SELECT count(*) FROM spool").fetchone()[0] == 0
    spool._conn.execute("INSERT INTO spool (size, row) VALUES (1, ?)",
                        (orjson.dumps({"payload": "old"}),))
    spool.active = True
    [entry] = spool.head(10)
    assert (entry.sink, entry.row) == ("records", {"payload": "old"})
    # A record spooled with a websocket connection beside it (before substrate kept
    # it in the record's attrs) is read back as the record alone.
    spool._conn.execute("DELETE FROM spool")
    spool._conn.execute("INSERT INTO spool (size, row) VALUES (1, ?)", (orjson.dumps(
        {"sink": "records", "row": {"payload": "ws"}, "node": {"connection": "c"}}),))
    [entry] = spool.head(10)
    assert (entry.sink, entry.row) == ("records", {"payload": "ws"})
