"""The raw archive: deterministic bundling, local and S3 storage, reprocessing."""

from __future__ import annotations

import gzip
import hashlib
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, delete, select

from downlink.archive.storage import LocalStorage, S3Storage, StorageError, open_storage
from downlink.cli.main import cli
from downlink.pipeline import tasks
from downlink.settings import Settings
from downlink.sources.base import TaskContext
from downlink.sources.ooni import archive, archive_task
from downlink.sources.ooni.submission import mint_uid
from downlink.sources.ooni.tables import archive_index, measurements
from downlink.sources.ooni.tables import fastpath as fastpath_table
from downlink.store.engine import _normalise
from downlink.testing.consumers import wait_caught_up
from downlink.testing.live import LiveServer
from downlink.testing.postgres import free_port
from tests.sources.ooni.conftest import fixture_measurements, ooni_server
from tests.sources.ooni.test_probe_services_http import open_report

T = TypeVar("T")


def entry(i: int, cc: str = "IT", tn: str = "webconnectivity", ts: float = 1.7e9) -> Any:
    body = orjson.dumps({"format": "json", "content": {"i": i}, "is_verified": "u"})
    uid = mint_uid(datetime.fromtimestamp(ts + i, UTC), cc, tn, body)
    return archive.Entry(uid, f"rid{i}", ts + i, body)


def test_bundling_is_deterministic_and_partitioned() -> None:
    entries = [entry(i, cc) for i in range(50) for cc in ("IT", "DE")]
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    a = archive.bundle(entries, "1")
    b = archive.bundle(shuffled, "1")
    assert list(a) == list(b)
    assert {k: archive.encode(v) for k, v in a.items()} == {
        k: archive.encode(v) for k, v in b.items()}
    hour = archive.hour_dir(1.7e9)
    assert sorted(a) == [
        f"raw/{hour[:8]}/{hour[8:]}/{cc}/webconnectivity/{hour}_{cc}_webconnectivity.n1.0.jsonl.gz"
        for cc in ("DE", "IT")
    ]
    key = sorted(a)[1]
    back = list(archive.decode(archive.encode(a[key]), key))
    assert back == a[key]
    # The stored bytes come back exactly, so the uid's hash still checks.
    for e in back:
        assert hashlib.sha512(e.body).hexdigest()[:16] == e.measurement_uid.split("_")[3]


def test_large_hours_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "SPLIT_BYTES", 1000)
    keys = sorted(archive.bundle([entry(i) for i in range(40)], "1"))
    assert len(keys) > 3 and keys[0].endswith(".n1.0.jsonl.gz")


def test_bad_archive_files_are_named() -> None:
    with pytest.raises(StorageError, match="x.jsonl.gz: not a gzip"):
        list(archive.decode(b"nope", "x.jsonl.gz"))
    with pytest.raises(StorageError, match="line 1"):
        list(archive.decode(gzip.compress(b"{}\n"), "k"))


def test_local_storage_refuses_escaping_keys(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).put("../x", b"")
    with pytest.raises(StorageError):
        open_storage("ftp://x")


def _rows(db_url: str, table: Any) -> dict[str, dict[str, Any]]:
    engine = create_engine(_normalise(db_url))
    try:
        with engine.connect() as conn:
            return {r[0]: dict(r._mapping) for r in conn.execute(select(table))}
    finally:
        engine.dispose()


def run_task(engine: Engine, body: Callable[[TaskContext], T]) -> T:
    """``body`` as one run of the task ooni_archive, in this process (its lease taken)."""
    settings = Settings(database_url=str(engine.url))
    return tasks.run_here(engine, "ooni", archive_task.NAME, settings, body, lambda _r: 0)


def _run_archive(db_url: str, storage: Any) -> tuple[int, int]:
    engine = create_engine(_normalise(db_url))
    try:
        out = run_task(engine, lambda ctx: archive.archive_due(
            ctx, storage, "1", 300.0, time.time() + 7200))
        return out.hours, out.measurements
    finally:
        engine.dispose()


def _submit_all(server: LiveServer) -> dict[str, str]:
    uids = {}
    for name, msm in fixture_measurements().items():
        rid = open_report(server.url, msm)
        r = httpx.post(f"{server.url}/report/{rid}", json={"format": "json", "content": msm})
        uids[r.json()["measurement_uid"]] = name
    return uids


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*.jsonl.gz"))}


@pytest.mark.postgres
def test_archive_reprocess_round_trip(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    # The server does not archive here: the command does (tests/sources/ooni/
    # test_archive_task.py has the server's own archiving).
    env = {"DOWNLINK_OONI_ARCHIVE": str(root), "DOWNLINK_OONI_RETENTION_HOURS": "0",
           "DOWNLINK_OONI_ARCHIVE_EVERY_S": "0"}
    server = ooni_server(db_url, tmp_path / "server.log", env=env)
    try:
        uids = _submit_all(server)
        wait_caught_up(server.url)
        before = _rows(db_url, fastpath_table)
        assert len(before) == 21

        hours, done = _run_archive(db_url, LocalStorage(root))
        assert done == 21 and hours >= 1
        first = _files(root)
        ccs = {k.split("/")[3] for k in first}
        assert {"IT", "IR", "CN", "US"} <= ccs
        assert all(k.split("/")[5].startswith(k.split("/")[1]) for k in first)
        assert set(_rows(db_url, archive_index)) == set(uids)
        # Archiving again changes nothing (the hour is done); re-archiving from scratch
        # gives byte-identical files.
        assert _run_archive(db_url, LocalStorage(root)) == (0, 0)
        again = tmp_path / "again"
        engine = create_engine(_normalise(db_url))
        hour = float(int(min(r["ts_reception"] for r in before.values()) // 3600) * 3600)
        for h in range(3):
            run_task(engine, lambda ctx, h=h: archive.archive_hour(
                ctx, LocalStorage(again), hour + 3600 * h, "1"))
        assert _files(again) == first

        # The core's generic reprocess replays the log through the consumer: same rows.
        generic = CliRunner().invoke(cli, [
            "reprocess", "--source", "ooni", "--since", datetime.now(UTC).strftime("%Y-%m-%d"),
            "--until", datetime.now(UTC).strftime("%Y-%m-%d"), "--database-url", db_url])
        assert generic.exit_code == 0, generic.output
        assert "reprocessed 21 row(s) through ooni_fastpath" in generic.output
        strip = lambda rows: {u: {k: v for k, v in r.items() if k != "update_time"}  # noqa: E731
                              for u, r in rows.items()}
        assert strip(_rows(db_url, fastpath_table)) == strip(before)

        # Delete the scores and the log (as retention would), reprocess from the archive.
        with engine.begin() as conn:
            conn.execute(delete(fastpath_table))
            conn.execute(delete(measurements))
        engine.dispose()
        runner = CliRunner()
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        tomorrow = datetime.fromtimestamp(time.time() + 86400, UTC).strftime("%Y-%m-%d")
        args = ["ooni", "reprocess", "--since", day, "--until", tomorrow,
                "--database-url", db_url]
        dry = runner.invoke(cli, [*args, "--dry-run"], env=env)
        assert dry.exit_code == 0, dry.output
        assert "would write 21 rows" in dry.output
        assert _rows(db_url, fastpath_table) == {}
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        assert "21 measurements, wrote 21 rows" in result.output
        assert strip(_rows(db_url, fastpath_table)) == strip(before)
        # Filters: only Italy's tor measurements.
        only = runner.invoke(cli, [*args, "--ccs", "IT", "--testnames", "tor"], env=env)
        assert "1 files, 1 measurements" in only.output

        # The API serves bodies from the archive once the log rows are gone.
        uid = next(u for u, n in uids.items() if n == "tor.json")
        raw = httpx.get(server.url + "/api/v1/raw_measurement",
                        params={"measurement_uid": uid})
        assert raw.json() == fixture_measurements()["tor.json"]
    finally:
        server.stop()


def test_purge_keeps_what_is_not_archived(tmp_path: Path) -> None:
    from downlink.sources.ooni.source import purge

    db = f"sqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    # Loading fingerprints migrates the database.
    data = Path(__file__).resolve().parents[3] / "src/downlink/sources/ooni/data"
    loaded = runner.invoke(cli, ["ooni", "fingerprints", "load",
                                 str(data / "fingerprints_dns.json"),
                                 str(data / "fingerprints_http.json"), "--database-url", db])
    assert loaded.exit_code == 0, loaded.output
    assert "loaded 150 DNS and 1699 HTTP fingerprints (version 1)" in loaded.output
    engine = create_engine(db)
    with engine.begin() as conn:
        for e in (entry(0, ts=1000.0), entry(1, ts=8000.0)):
            conn.execute(measurements.insert().values(
                measurement_uid=e.measurement_uid, report_id=e.report_id, probe_cc="IT",
                probe_asn=1, test_name="web_connectivity", ts_reception=e.ts_reception,
                is_verified="u", body=e.body))
    assert _run_archive(db, LocalStorage(tmp_path / "a"))[1] == 2
    with engine.begin() as conn:
        conn.execute(archive.state.delete())
        archive._set_state(conn, archive.NEXT_HOUR, "3600.0")  # only the first hour done
        assert purge(conn, 1e9) == 1
        left = conn.execute(select(measurements.c.ts_reception)).scalars().all()
    assert left == [8001.0]
    engine.dispose()


def test_fingerprints_load_errors(tmp_path: Path) -> None:
    bad = tmp_path / "fp.csv"
    bad.write_text("name,scope,location_found,pattern_type,pattern\nx,isp,body,fuzzy,abc\n")
    result = CliRunner().invoke(cli, ["ooni", "fingerprints", "load", str(bad),
                                      "--database-url", f"sqlite:///{tmp_path / 'f.db'}"])
    assert result.exit_code != 0
    assert "fp.csv entry 1: unknown pattern_type 'fuzzy'" in result.output


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[str]:
    """A real S3-compatible server process (moto_server)."""
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                            stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_s3_archive_round_trip(moto: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=moto).create_bucket(Bucket="ooni")
    storage = open_storage("s3://ooni/dl", moto)
    assert isinstance(storage, S3Storage)
    files = archive.bundle([entry(i, cc) for i in range(5) for cc in ("IT", "BR")], "1")
    for key, items in files.items():
        storage.put(key, archive.encode(items))
    day = archive.hour_dir(1.7e9)[:8]
    listed = list(storage.list(f"raw/{day}/"))
    assert listed == sorted(files)
    back = list(archive.decode(storage.get(listed[0]), listed[0]))
    assert back == files[listed[0]]
    since = datetime.fromtimestamp(1.7e9 - 86400, UTC)
    until = datetime.fromtimestamp(1.7e9 + 86400, UTC)
    assert archive.keys_between(storage, since, until, ["BR"]) == [listed[0]]
    with pytest.raises(StorageError, match="cannot download"):
        storage.get("raw/missing")
