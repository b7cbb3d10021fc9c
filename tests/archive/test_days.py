"""The core raw archive: any source's rows as NDJSON by day, kept by the server.

The toy source (tests/sources/toy) declares its items as an archive; substrate its
``records``. ``downlink archive`` runs the archive consumer and closes the days that
are over; rows deleted from the database (as retention would) come back through
``downlink reprocess --from-archive``; ``downlink reprocess --source archive`` rebuilds
days byte for byte. On SQLite and PostgreSQL, on local disk and on a real
S3-compatible server (moto_server). The server's own archiving (posts over HTTP,
SIGKILL, a failing S3) is in test_server.py.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, delete, insert, select

from downlink.archive import days
from downlink.archive.consumer import archiving
from downlink.archive.storage import Storage, open_storage
from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.base import LogRecord
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.store.inserts import RECORD_COLUMNS
from downlink.store.tables import archive_days, consumers, records
from tests.sources.ooni.test_archive import moto  # noqa: F401 - the S3 server fixture
from tests.sources.toy.source import count_daily, daily
from tests.sources.toy.tables import toy_daily, toy_items

TOY = "tests.sources.toy.source"
DAY0 = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
          "AWS_DEFAULT_REGION": "us-east-1"}


def run(args: list[str], env: dict[str, str]) -> Result:
    """Run the CLI in this process; assert it succeeded."""
    result = CliRunner().invoke(cli, args, env=env)
    if result.exc_info and result.exit_code:
        import traceback
        traceback.print_exception(*result.exc_info)
    assert result.exit_code == 0, result.output
    return result


def toy_engine(db_url: str, n: int, step_s: float) -> Engine:
    """A migrated database with ``n`` toy items from DAY0, ``step_s`` apart."""
    settings = Settings(database_url=db_url, source_modules=(TOY,))
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine, sources=settings.registry)
    with engine.begin() as conn:
        conn.execute(insert(toy_items), [
            {"name": f"n{i % 4}", "ts_reception": DAY0 + i * step_s} for i in range(n)
        ])
    return engine


def snapshot(storage: Storage, prefix: str = "") -> dict[str, bytes]:
    """Every object of the archive, by key."""
    return {k: storage.get(k) for k in storage.list(prefix)}


@pytest.fixture
def toy_db(db_url: str) -> Iterator[Engine]:
    engine = toy_engine(db_url, 3 * 48, 1800.0)
    try:
        yield engine
    finally:
        engine.dispose()


def _round_trip(engine: Engine, db_url: str, env: dict[str, str], storage: Storage) -> None:
    env = {"DOWNLINK_SOURCES": TOY, **env}
    span = ["--since", "2026-11-20", "--until", "2026-11-22"]
    with engine.begin() as conn:  # what the live consumer derived
        items = conn.execute(select(toy_items).order_by(toy_items.c.id)).mappings()
        count_daily(conn, [LogRecord(r["id"], r["ts_reception"], dict(r)) for r in items])
        expected = daily(conn)
    assert sum(r["count"] for r in expected) == 144

    out = run(["archive", "--source", "toy", "--database-url", db_url], env)
    assert "archive_toy_items: 144 new row(s) of toy_items" in out.output
    assert "toy/items: archived 144 row(s) in 3 day(s)" in out.output
    again = run(["archive", "--database-url", db_url], env)
    assert "toy/items: archived 0 row(s) in 0 day(s)" in again.output
    closed = snapshot(storage, "toy/")
    assert not [k for k in closed if "/open/" in k]
    with engine.connect() as conn:
        assert [(r.day, r.staged, r.closed) for r in conn.execute(select(archive_days))] == [
            ("20261120", 48, 48), ("20261121", 48, 48), ("20261122", 48, 48)]

    # Rebuilding a day from the database gives the same bytes.
    rebuilt = run(["reprocess", "--source", "archive", "--since", "2026-11-21",
                   "--until", "2026-11-21", "--database-url", db_url], env)
    assert "reprocessed 48 row(s) through archive_toy_items" in rebuilt.output
    assert any("/open/" in k for k in storage.list("toy/items/20261121/"))
    run(["archive", "--database-url", db_url], env)
    assert snapshot(storage, "toy/") == closed

    # Retention removes the rows (and the counts are lost); the archive brings them back.
    with engine.begin() as conn:
        conn.execute(delete(toy_items))
        conn.execute(delete(toy_daily))
    dry = run(["reprocess", "--source", "toy", *span, "--from-archive", "--dry-run",
               "--database-url", db_url], env)
    assert "would replay 144 archived row(s) from 3 file(s) through toy_daily" in dry.output
    for _ in range(2):  # twice: the same counts
        done = run(["reprocess", "--source", "toy", *span, "--from-archive",
                    "--database-url", db_url], env)
        assert "replayed 144 archived row(s) from 3 file(s) through toy_daily" in done.output
        with engine.connect() as conn:
            assert daily(conn) == expected
    # A part of the range: only its days are rebuilt, the others kept.
    run(["reprocess", "--source", "toy", "--since", "2026-11-21", "--until", "2026-11-21",
         "--from-archive", "--database-url", db_url], env)
    with engine.connect() as conn:
        assert daily(conn) == expected
    # The archive is not rebuilt from a database that lost rows it holds.
    lost = CliRunner().invoke(cli, ["reprocess", "--source", "archive", *span,
                                    "--database-url", db_url], env=env)
    assert lost.exit_code != 0
    assert "the database holds 0 of the 144 archived rows" in lost.output
    assert snapshot(storage, "toy/") == closed


def test_archive_and_replay_on_local_disk(toy_db: Engine, db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _round_trip(toy_db, db_url, {"DOWNLINK_ARCHIVE": str(root)}, open_storage(str(root)))
    day = root / "toy" / "items" / "20261121"
    assert sorted(p.name for p in day.iterdir()) == ["done.json", "items.20261121.0000.ndjson.gz"]
    lines = gzip.decompress((day / "items.20261121.0000.ndjson.gz").read_bytes()).splitlines()
    first = orjson.loads(lines[0])
    assert first["name"] == "n0" and first["ts_reception"] == DAY0 + 86400
    order = [(orjson.loads(x)["ts_reception"], orjson.loads(x)["id"]) for x in lines]
    assert order == sorted(order)
    assert orjson.loads((day / "done.json").read_bytes()) == {
        "files": ["items.20261121.0000.ndjson.gz"], "rows": 48,
    }


def test_archive_and_replay_on_s3(
    toy_db: Engine, db_url: str, moto: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=moto).create_bucket(Bucket="raw")
    storage = open_storage("s3://raw/dl", moto)
    _round_trip(toy_db, db_url, {"DOWNLINK_ARCHIVE": "s3://raw/dl",
                                 "DOWNLINK_ARCHIVE_S3_ENDPOINT": moto}, storage)
    keys = list(storage.list("toy/items/"))
    assert len(keys) == 6 and "toy/items/20261122/done.json" in keys


def test_days_close_the_same_however_the_rows_were_staged(tmp_path: Path) -> None:
    """Batches of any size, late rows, a crash before segments are dropped: same files."""
    settings = Settings(database_url="sqlite://", source_modules=(TOY,),
                        archive=str(tmp_path / "x"))
    found = archiving(settings)
    assert found is not None
    bound = next(b for b in found.bounds if b.source == "toy")
    rows = [{"id": i, "name": f"n{i % 3}", "ts_reception": DAY0 + (i * 7919) % 86400}
            for i in range(1, 400)]
    day = days.day_of(DAY0)

    def archive(root: Path, sizes: list[int], late: int = 0) -> dict[str, bytes]:
        storage = open_storage(str(root))
        at, staged = 0, 0
        body = rows[:len(rows) - late]
        for n in sizes * len(rows):
            if at >= len(body):
                break
            staged += sum(days.stage(storage, bound, body[at:at + n]).values())
            at += n
        closed = days.close_day(storage, bound, day)
        assert closed.rows == staged
        days.drop_segments(storage, closed.segments)
        if late:  # rows committed after the day was closed: closed again with them
            days.stage(storage, bound, rows[-late:])
            again = days.close_day(storage, bound, day)
            # Killed before dropping the segments: closing once more changes nothing.
            assert days.close_day(storage, bound, day) == again
            days.drop_segments(storage, again.segments)
        return snapshot(storage)

    one = archive(tmp_path / "a", [1000])
    assert archive(tmp_path / "b", [1, 5, 17]) == one
    assert archive(tmp_path / "c", [50], late=30) == one
    assert list(one) == ["toy/items/20261120/done.json",
                         "toy/items/20261120/items.20261120.0000.ndjson.gz"]
    storage = open_storage(str(tmp_path / "a"))
    assert [r["id"] for r in next(days.rows_between(storage, bound, DAY0, DAY0 + 86400))] == [
        r["id"] for r in sorted(rows, key=lambda r: (r["ts_reception"], r["id"]))]


def _record(source: str, i: int, ts: float) -> dict[str, Any]:
    return {
        **dict.fromkeys(RECORD_COLUMNS, ""), "sender_flagged": None,
        "source": source, "record_version": 2,
        "classification": "substrate/x", "severity": 1, "machine_id": f"m{i}",
        "ts_capture": ts, "ts_reception": ts, "payload_version": 1, "external": False,
        "payload": f"payload {i}", "attrs": {"n": i, "nested": [1, "two"]},
        "dedup_key": None, "guilty_id": None,
    }


def test_substrate_records_archive_only_its_own_rows(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "a"
    settings = Settings(database_url=db_url, archive=str(root))
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine, sources=settings.registry)
    try:
        with engine.begin() as conn:
            conn.execute(insert(records), [
                _record("substrate" if i % 2 else "other", i, DAY0 + i * 60.0)
                for i in range(40)
            ])
        out = run(["archive", "--source", "substrate", "--database-url", db_url],
                  {"DOWNLINK_ARCHIVE": str(root)})
        assert "substrate/records: archived 20 row(s) in 1 day(s)" in out.output
        found = archiving(settings)
        assert found is not None
        bound = next(b for b in found.bounds if b.source == "substrate")
        archived = next(days.rows_between(found.storage, bound, DAY0, DAY0 + 86400))
        with engine.connect() as conn:
            stored = [dict(r) for r in conn.execute(
                select(records).where(records.c.source == "substrate").order_by(records.c.id)
            ).mappings()]
        assert archived == [orjson.loads(days.encode_row(r)) for r in stored]
        assert [r["attrs"] for r in archived][:1] == [{"n": 1, "nested": [1, "two"]}]
    finally:
        engine.dispose()


def test_binary_columns_round_trip() -> None:
    from downlink.sources.ooni.tables import measurements

    row = {"id": 1, "body": b"\x00\xffjson", "ts_reception": 1.5}
    data = gzip.compress(days.encode_row(row) + b"\n")
    assert list(days.decode_rows(data, "k", measurements)) == [row]


def test_archive_refusals(tmp_path: Path) -> None:
    env = {"DOWNLINK_SOURCES": TOY}
    db = f"sqlite:///{tmp_path / 'r.db'}"
    off = CliRunner().invoke(cli, ["archive", "--database-url", db], env=env)
    assert off.exit_code != 0 and "set DOWNLINK_ARCHIVE" in off.output
    env["DOWNLINK_ARCHIVE"] = str(tmp_path / "a")
    none = CliRunner().invoke(cli, ["archive", "--source", "ooni", "--database-url", db], env=env)
    assert none.exit_code != 0 and "source 'ooni' archives nothing" in none.output
    bad = tmp_path / "a" / "toy" / "items" / "20261120"
    bad.mkdir(parents=True)
    (bad / "items.20261120.0000.ndjson.gz").write_bytes(b"not gzip")
    run(["migrate", "--database-url", db], env)
    broken = CliRunner().invoke(cli, [
        "reprocess", "--source", "toy", "--since", "2026-11-20", "--until", "2026-11-20",
        "--from-archive", "--database-url", db], env=env)
    assert broken.exit_code != 0
    assert "items.20261120.0000.ndjson.gz: not a gzip file" in broken.output
    own = CliRunner().invoke(cli, [
        "reprocess", "--source", "archive", "--since", "2026-11-20", "--until", "2026-11-20",
        "--from-archive", "--database-url", db], env=env)
    assert own.exit_code != 0 and "without --from-archive" in own.output


def test_a_day_that_fails_to_close_is_shown_and_closed_later(
    toy_db: Engine, db_url: str, tmp_path: Path,
) -> None:
    root = tmp_path / "a"
    env = {"DOWNLINK_SOURCES": TOY, "DOWNLINK_ARCHIVE": str(root)}
    staged = run(["archive", "--database-url", db_url],
                 {**env, "DOWNLINK_ARCHIVE_GRACE_S": "1e12"})  # nothing is over yet
    assert "toy/items: archived 0 row(s) in 0 day(s)" in staged.output
    segment = sorted((root / "toy" / "items" / "20261121" / "open").iterdir())[0]
    good = segment.read_bytes()
    segment.write_bytes(b"broken")
    failed = CliRunner().invoke(cli, ["archive", "--database-url", db_url], env=env)
    assert failed.exit_code == 1
    assert f"{segment.name}: not a gzip file" in failed.output
    with toy_db.connect() as conn:
        errors = dict(conn.execute(select(archive_days.c.day, archive_days.c.error)).all())
        shown = conn.execute(select(consumers.c.error)
                             .where(consumers.c.name == "archive_toy_items")).scalar_one()
    assert errors["20261120"] is None and "not a gzip file" in errors["20261121"]
    assert shown == errors["20261121"]
    segment.write_bytes(good)
    again = run(["archive", "--database-url", db_url], env)
    assert "toy/items: archived 96 row(s) in 2 day(s)" in again.output
    with toy_db.connect() as conn:
        assert [(r.staged, r.closed, r.error) for r in conn.execute(select(archive_days))] == [
            (48, 48, None)] * 3


def test_a_bad_archive_setting_is_named(tmp_path: Path) -> None:
    for url in ("ftp://host/x", "s3:///no-bucket"):
        bad = CliRunner().invoke(cli, ["archive", "--database-url",
                                       f"sqlite:///{tmp_path / 'r.db'}"],
                                 env={"DOWNLINK_ARCHIVE": url})
        assert bad.exit_code == 2
        assert f"DOWNLINK_ARCHIVE: {url!r} is not a directory" in bad.output
