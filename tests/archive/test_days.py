"""The core raw archive: any source's rows as NDJSON by day, replayed from the archive.

The toy source (tests/sources/toy) declares its items as an archive; substrate its
``records``. Rows are archived by ``downlink archive``, deleted from the database (as
retention would), and ``downlink reprocess --from-archive`` rebuilds the toy consumer's
counts identically; on SQLite and PostgreSQL, on local disk and on a real
S3-compatible server (moto_server).
"""

from __future__ import annotations

import gzip
import time
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
from downlink.archive.storage import open_storage
from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.base import LogRecord
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.store.inserts import RECORD_COLUMNS
from downlink.store.tables import records
from tests.sources.ooni.test_archive import moto  # noqa: F401 - the S3 server fixture
from tests.sources.toy.source import count_daily, daily
from tests.sources.toy.tables import toy_daily, toy_items

TOY = "tests.sources.toy.source"
DAY0 = datetime(2026, 11, 20, tzinfo=UTC).timestamp()


def _run(args: list[str], env: dict[str, str]) -> Result:
    result = CliRunner().invoke(cli, args, env=env)
    if result.exc_info and result.exit_code:
        import traceback
        traceback.print_exception(*result.exc_info)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def toy_db(db_url: str) -> Iterator[Engine]:
    settings = Settings(database_url=db_url, source_modules=(TOY,))
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine, sources=settings.registry)
    with engine.begin() as conn:
        conn.execute(insert(toy_items), [
            {"name": f"n{i % 4}", "ts_reception": DAY0 + i * 1800.0} for i in range(3 * 48)
        ])
    try:
        yield engine
    finally:
        engine.dispose()


def _round_trip(engine: Engine, db_url: str, env: dict[str, str]) -> None:
    env = {"DOWNLINK_SOURCES": TOY, **env}
    span = ["--since", "2026-11-20", "--until", "2026-11-22"]
    with engine.begin() as conn:  # what the live consumer derived
        items = conn.execute(select(toy_items).order_by(toy_items.c.id)).mappings()
        count_daily(conn, [LogRecord(r["id"], r["ts_reception"], dict(r)) for r in items])
        expected = daily(conn)
    assert sum(r["count"] for r in expected) == 144

    out = _run(["archive", "--source", "toy", "--database-url", db_url], env)
    assert "toy/items: archived 144 row(s) in 3 day(s)" in out.output
    again = _run(["archive", "--database-url", db_url], env)
    assert "toy/items: archived 0 row(s) in 0 day(s)" in again.output

    # Retention removes the rows (and the counts are lost); the archive brings them back.
    with engine.begin() as conn:
        conn.execute(delete(toy_items))
        conn.execute(delete(toy_daily))
    dry = _run(["reprocess", "--source", "toy", *span, "--from-archive", "--dry-run",
                "--database-url", db_url], env)
    assert "would replay 144 archived row(s) from 3 file(s) through toy_daily" in dry.output
    for _ in range(2):  # twice: the same counts
        done = _run(["reprocess", "--source", "toy", *span, "--from-archive",
                     "--database-url", db_url], env)
        assert "replayed 144 archived row(s) from 3 file(s) through toy_daily" in done.output
        with engine.connect() as conn:
            assert daily(conn) == expected
    # A part of the range: only its days are rebuilt, the others kept.
    _run(["reprocess", "--source", "toy", "--since", "2026-11-21", "--until", "2026-11-21",
          "--from-archive", "--database-url", db_url], env)
    with engine.connect() as conn:
        assert daily(conn) == expected


def test_archive_and_replay_on_local_disk(toy_db: Engine, db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _round_trip(toy_db, db_url, {"DOWNLINK_ARCHIVE": str(root)})
    day = root / "toy" / "items" / "20261121"
    assert sorted(p.name for p in day.iterdir()) == ["done.json", "items.20261121.0000.ndjson.gz"]
    lines = gzip.decompress((day / "items.20261121.0000.ndjson.gz").read_bytes()).splitlines()
    first = orjson.loads(lines[0])
    assert first["name"] == "n0" and first["ts_reception"] == DAY0 + 86400
    assert [orjson.loads(x)["id"] for x in lines] == sorted(orjson.loads(x)["id"] for x in lines)
    assert orjson.loads((day / "done.json").read_bytes()) == {
        "files": ["items.20261121.0000.ndjson.gz"], "rows": 48,
    }


def test_archive_and_replay_on_s3(
    toy_db: Engine, db_url: str, moto: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=moto).create_bucket(Bucket="raw")
    _round_trip(toy_db, db_url, {"DOWNLINK_ARCHIVE": "s3://raw/dl",
                                 "DOWNLINK_ARCHIVE_S3_ENDPOINT": moto})
    storage = open_storage("s3://raw/dl", moto)
    keys = list(storage.list("toy/items/"))
    assert len(keys) == 6 and "toy/items/20261122/done.json" in keys


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
    settings = Settings(database_url=db_url)
    engine = create_engine(_normalise(db_url))
    migrate.upgrade(engine, sources=settings.registry)
    try:
        with engine.begin() as conn:
            conn.execute(insert(records), [
                _record("substrate" if i % 2 else "other", i, DAY0 + i * 60.0)
                for i in range(40)
            ])
        bound = next(b for b in days.bind(settings.registry) if b.source == "substrate")
        storage = open_storage(str(tmp_path / "a"))
        now = DAY0 + 2 * 86400
        assert days.archive_closed_days(engine, storage, bound, now) == (1, 20)
        key = "substrate/records/20261120/records.20261120.0000.ndjson.gz"
        first = storage.get(key)
        # Archiving the day again gives the same bytes.
        with engine.connect() as conn:
            days.archive_day(conn, storage, bound, datetime(2026, 11, 20, tzinfo=UTC).date())
        assert storage.get(key) == first
        archived = next(days.rows_between(storage, bound, DAY0, DAY0 + 86400))
        with engine.connect() as conn:
            stored = [dict(r) for r in conn.execute(
                select(records).where(records.c.source == "substrate").order_by(records.c.id)
            ).mappings()]
        assert archived == [orjson.loads(days.encode_row(r)) for r in stored]
        assert [r["attrs"] for r in archived][:1] == [{"n": 1, "nested": [1, "two"]}]
        assert days.archived_before(storage, bound) == DAY0 + 86400
        # Nothing of a day not yet over (plus the grace period).
        assert days.archive_closed_days(engine, storage, bound, time.time()) == (0, 0)
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
    _run(["migrate", "--database-url", db], env)
    broken = CliRunner().invoke(cli, [
        "reprocess", "--source", "toy", "--since", "2026-11-20", "--until", "2026-11-20",
        "--from-archive", "--database-url", db], env=env)
    assert broken.exit_code != 0
    assert "items.20261120.0000.ndjson.gz: not a gzip file" in broken.output
