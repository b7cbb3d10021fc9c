"""A record the database refuses never blocks the records behind it (issue 9, item 1).

The database is made to refuse records for reasons other than a NUL: a trigger raising
an error (PostgreSQL: ``RaiseException``; SQLite: ``RAISE(ABORT)``) and, on
PostgreSQL, a CHECK constraint. Each is a different driver exception type; none is
listed anywhere in Downlink. Live: the refused record is answered on its own (400, a
bulk item's 400) while the others are stored; with the spool, a record spooled during
an outage and refused when drained is set aside (counted, listed, exported, retried)
and the records behind it reach PostgreSQL. A spool holding records with a NUL from an
older version (the production jam) drains the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine
from websockets.asyncio.client import connect

from downlink.cli.main import cli
from downlink.sources.clearlinux.wire import fields_from_object, validate
from downlink.store.envelope import wrap
from downlink.store.spool import Spool
from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.hardening.records import TID, stored_rows, v3_record
from tests.sources.substrate.client import flush, frame, metric, send_frames

TOKEN = "operator-token"
JSON_HEADERS = {"Content-Type": "application/json", "X-Telemetry-TID": TID}


def _engine_url(db_url: str) -> str:
    return db_url.replace("postgresql://", "postgresql+psycopg://", 1)


def refuse_poison(db_url: str) -> None:
    """Make the database refuse records with System-Name ``poison`` and substrate
    messages ``poison`` by a trigger (and, on PostgreSQL, Kernel-Version
    ``6.6.6-poison`` by a CHECK constraint)."""
    engine = create_engine(_engine_url(db_url))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON records "
                    "WHEN NEW.system_name = 'poison' OR NEW.classification = 'substrate/poison' "
                    "BEGIN SELECT RAISE(ABORT, 'poison refused by a test trigger'); END"
                )
                return
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF NEW.system_name = 'poison' "
                "OR NEW.classification = 'substrate/poison' THEN "
                "RAISE EXCEPTION 'poison refused by a test trigger'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON records "
                "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            )
            conn.exec_driver_sql(
                "ALTER TABLE records ADD CONSTRAINT no_poison_kernel "
                "CHECK (kernel_version <> '6.6.6-poison') NOT VALID"
            )
    finally:
        engine.dispose()


def allow_poison(db_url: str) -> None:
    """Undo :func:`refuse_poison`."""
    engine = create_engine(_engine_url(db_url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_poison" + (
                "" if engine.dialect.name == "sqlite" else " ON records"))
            if engine.dialect.name != "sqlite":
                conn.exec_driver_sql("ALTER TABLE records DROP CONSTRAINT no_poison_kernel")
    finally:
        engine.dispose()


def _poisons(db_url: str) -> list[tuple[dict[str, Any], str]]:
    """Records the database refuses, with the error class it answers (a name)."""
    sqlite = db_url.startswith("sqlite")
    found = [(v3_record(payload="poison-trigger", system_name="poison"),
              "IntegrityError" if sqlite else "RaiseException")]
    if not sqlite:
        found.append((v3_record(payload="poison-check", kernel_version="6.6.6-poison"),
                      "CheckViolation"))
    return found


def test_a_refused_record_is_answered_alone_and_the_others_are_stored(
    server: LiveServer, db_url: str
) -> None:
    refuse_poison(db_url)
    good: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for poison, error in _poisons(db_url):
            record = v3_record(payload=f"before-{error}")
            assert client.post("/v3/collector", content=orjson.dumps(record),
                               headers=JSON_HEADERS).status_code == 201
            good.append(record["payload"])
            resp = client.post("/v3/collector", content=orjson.dumps(poison),
                               headers=JSON_HEADERS)
            assert resp.status_code == 400, resp.text
            assert resp.json() == {"message": f"the store refused this record ({error})"}

        # Bulk: the refused item gets its own 400, the rest is stored.
        poison = _poisons(db_url)[0][0]
        items = [v3_record(payload="bulk-0"), poison, v3_record(payload="bulk-2")]
        resp = client.post("/api/v1/records/bulk", content=orjson.dumps(items),
                           headers=JSON_HEADERS)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert (doc["accepted"], doc["rejected"]) == (2, 1)
        assert doc["results"][1]["status"] == 400
        assert doc["results"][1]["message"].startswith("the store refused this record (")
        assert [r["status"] for r in doc["results"]] == [201, 400, 201]
        good += ["bulk-0", "bulk-2"]

    # Concurrent posts share the writer's batches: a refused one fails none of the others.
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as aclient:
            posts = [v3_record(payload=f"burst-{i}") for i in range(30)]
            posts[7] = posts[19] = _poisons(db_url)[0][0]
            return await asyncio.gather(*(
                aclient.post("/v3/collector", content=orjson.dumps(r), headers=JSON_HEADERS)
                for r in posts
            ))

    answers = asyncio.run(burst())
    statuses = [r.status_code for r in answers]
    assert statuses.count(400) == 2 and statuses.count(201) == 28, statuses
    assert all(isinstance(r.json()["id"], int) for r in answers if r.status_code == 201)
    good += [f"burst-{i}" for i in range(30) if i not in (7, 19)]

    # A websocket message the database refuses is counted and skipped; the connection
    # and the messages around it go on.
    async def node() -> dict[str, Any]:
        async with connect(server.url.replace("http://", "ws://", 1) + "/") as ws:
            await send_frames(ws, [frame(1, 1), frame(1, 2, msg="poison"), frame(1, 3)])
            return await flush(ws)

    assert asyncio.run(node())["stored"] == 2
    assert metric(server, "downlink_ws_malformed_messages_total", reason="refused") == 1

    stored = [r["payload"] for r in stored_rows(db_url) if r["source"] == "clearlinux"]
    assert sorted(stored) == sorted(good)
    assert metric(server, "downlink_records_rejected_total", source="clearlinux",
                  reason="refused") == len(_poisons(db_url)) + 1 + 2


# -- the spool on PostgreSQL -------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL cluster this test may stop and start."""
    pg = TempPostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _spool(runner: CliRunner, spool_dir: Path, *args: str) -> Any:
    return runner.invoke(cli, ["spool", *args, "--spool-dir", str(spool_dir)])


def test_refused_while_draining_is_set_aside_and_the_rest_reach_postgres(
    own_postgres: TempPostgres, tmp_path: Path
) -> None:
    url = own_postgres.create_database("drain")
    spool_dir = tmp_path / "spool"
    env = {"DOWNLINK_SPOOL_DIR": str(spool_dir), "DOWNLINK_API_TOKENS": TOKEN}
    server = LiveServer(url, env=env, log=tmp_path / "server.log").start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        refuse_poison(url)
        poisons = _poisons(url)
        sent = [v3_record(payload="good-0"), poisons[0][0], v3_record(payload="good-1"),
                poisons[1][0], *[v3_record(payload=f"good-{i}") for i in range(2, 6)]]
        own_postgres.pause()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for record in sent:  # the database is down: every one is spooled (acked)
                resp = client.post("/v3/collector", content=orjson.dumps(record),
                                   headers=JSON_HEADERS)
                assert resp.status_code == 201 and resp.json()["id"] is None, resp.text
            own_postgres.resume()
            goods = [f"good-{i}" for i in range(6)]
            _wait_for(lambda: [r["payload"] for r in stored_rows(url)] == goods)
            # New records are stored at once again: nothing jams the spool.
            resp = client.post("/v3/collector", content=orjson.dumps(v3_record(payload="after")),
                               headers=JSON_HEADERS)
            assert resp.status_code == 201 and isinstance(resp.json()["id"], int), resp.text

            health = client.get("/-/health", headers=auth).json()
            assert health["spool"] == {"pending": 0, "set_aside": 2}
            assert "spool" not in client.get("/-/health").json()  # details: token holders
            metrics = client.get("/metrics", headers=auth).text
        assert "downlink_spool_set_aside_records 2.0" in metrics
        assert "downlink_spool_records_set_aside_total 2.0" in metrics
    finally:
        server.stop()

    runner = CliRunner()
    listed = _spool(runner, spool_dir, "list")
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.stdout.splitlines() if "\t" in line]
    assert len(lines) == 2
    assert "RaiseException: poison refused by a test trigger" in lines[0]
    assert "CheckViolation" in lines[1]

    export = tmp_path / "aside.ndjson"
    out = _spool(runner, spool_dir, "export", str(export))
    assert out.exit_code == 0, out.output
    exported = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    assert [e["payload"] for e in exported] == ["poison-trigger", "poison-check"]
    assert "RaiseException" in exported[0]["set_aside"]["error"]

    # Still refused: the retry says so (exit 1) and keeps them.
    again = runner.invoke(cli, ["spool", "retry", "--spool-dir", str(spool_dir),
                                "--database-url", url])
    assert again.exit_code == 1 and "2 still refused" in again.output
    allow_poison(url)
    first_id = exported[0]["set_aside"]["id"]
    retried = runner.invoke(cli, ["spool", "retry", "--id", str(first_id), "--spool-dir",
                                  str(spool_dir), "--database-url", url])
    assert retried.exit_code == 0, retried.output
    assert "1 stored" in retried.output
    assert len(Spool(spool_dir, 1).refused()) == 1
    dropped = _spool(runner, spool_dir, "drop", "--all")
    assert dropped.exit_code == 0 and "dropped 1" in dropped.output
    assert [r["payload"] for r in stored_rows(url)][-1] == "poison-trigger"


def _row(**changes: str) -> dict[str, Any]:
    fields, payload = fields_from_object(v3_record(payload=changes.pop("payload", "p")))
    row = validate(fields, payload, any_tid=True, received_at=time.time())
    return {**row, **changes}


def test_a_spool_jammed_by_an_older_version_drains(db_url: str, tmp_path: Path) -> None:
    # The production jam of issue 9: records with a NUL acked and spooled, the drainer
    # retrying the head record forever. A server started on that spool must set them
    # aside and move every record behind them into the database.
    spool_dir = tmp_path / "spool"
    old = Spool(spool_dir, 10_000_000)
    old.append("records", wrap([
        _row(payload="bad-0", system_name="deb\x00ian"),
        _row(payload="good-0"),
        _row(payload="bad-1", kernel_version="6.1\x00"),
        *[_row(payload=f"good-{i}") for i in range(1, 4)],
    ]))
    old.close()
    server = LiveServer(db_url, env={"DOWNLINK_SPOOL_DIR": str(spool_dir)},
                        log=tmp_path / "server.log").start()
    try:
        goods = [f"good-{i}" for i in range(4)]
        _wait_for(lambda: [r["payload"] for r in stored_rows(db_url)] == goods)
        assert metric(server, "downlink_spool_set_aside_records") == 2
    finally:
        server.stop()
    aside = Spool(spool_dir, 1).refused()
    assert [(entry.row["payload"], entry.error) for entry in aside] == [
        ("bad-0", "system_name contains a NUL character, which cannot be stored"),
        ("bad-1", "kernel_version contains a NUL character, which cannot be stored"),
    ]
