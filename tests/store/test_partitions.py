"""Monthly partitions of ``records`` on a real PostgreSQL (store/partitions.py).

The conversion runs while a two-worker server takes records; retention drops whole
partitions; ingest, retransmissions, commit-order following and the pages still work on
the partitioned table.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.store import follow, partitions, retention
from downlink.store.database import Store
from downlink.store.inserts import insert_records
from downlink.store.tables import records
from downlink.testing import cli as command
from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.web.helpers import load, rec
from tests.wire import v2_headers

pytestmark = pytest.mark.postgres
DAY = 86400.0


def _sql(pg: TempPostgres, db: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname={db}",
                         autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def database(postgres: TempPostgres) -> Iterator[str]:
    name = "p_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    try:
        yield name
    finally:
        postgres.drop_database(name)


def _keys(pg: TempPostgres, db: str) -> set[object]:
    return {r[0] for r in _sql(pg, db, "SELECT dedup_key FROM records_keys")}


def _record_keys(pg: TempPostgres, db: str) -> set[object]:
    return {r[0] for r in _sql(
        pg, db, "SELECT dedup_key FROM records WHERE dedup_key IS NOT NULL")}


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return command.run(["partition", *args], env={"DATABASE_URL": url}, timeout=120)


def test_converting_under_load_loses_nothing(
    postgres: TempPostgres, database: str, tmp_path: Path
) -> None:
    url = postgres.url(database)
    server = LiveServer(url, workers=2, log=tmp_path / "server.log").start(timeout=120)
    acked: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def post_until_stopped() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/v2/collector", headers=v2_headers(), content=b"load")
                if r.status_code == 201:
                    acked.append(int(r.json()["id"]))
                else:
                    failures.append(f"{r.status_code} {r.text}")

    try:
        before = v2_headers()
        first = httpx.post(server.url + "/v2/collector", headers=before, content=b"early")
        assert first.status_code == 201
        acked.append(int(first.json()["id"]))
        threads = [threading.Thread(target=post_until_stopped) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        done = _cli(url, "records")
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        assert done.returncode == 0, done.stderr
        assert "records is partitioned by month" in done.stdout
        assert not failures
        assert len(acked) > 50
        stored = {row[0] for row in _sql(postgres, database, "SELECT id FROM records")}
        assert stored == set(acked)
        assert len(acked) == len(set(acked))
        parts = {row[0] for row in _sql(
            postgres, database,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'records'::regclass")}
        assert "records_legacy" in parts and len(parts) >= 3
        after = _sql(postgres, database, "SELECT count(*) FROM ONLY records_legacy")[0][0]
        assert isinstance(after, int) and after > 0
        # Every stored record's key was copied while the posts went on, none more.
        assert _keys(postgres, database) == _record_keys(postgres, database)

        # A record stored before the conversion is a retransmission after it.
        again = httpx.post(server.url + "/v2/collector", headers=before, content=b"early")
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]

        # A retransmission reaching both workers at once is stored once.
        headers = v2_headers()
        with httpx.Client(base_url=server.url) as a, httpx.Client(base_url=server.url) as b:
            answers: list[httpx.Response] = []
            pair = [threading.Thread(target=lambda c=c: answers.append(
                c.post("/v2/collector", headers=headers, content=b"twice")))
                for c in (a, a, b, b)]
            for t in pair:
                t.start()
            for t in pair:
                t.join()
        assert {r.status_code for r in answers} == {201}
        assert len({r.json()["id"] for r in answers}) == 1
        event = headers["event_id"]
        copies = _sql(postgres, database,
                      f"SELECT count(*) FROM records WHERE event_id = '{event}'")[0][0]
        assert copies == 1

        # Reads on the partitioned table: the API, a record by id, the pages.
        newest = httpx.get(server.url + "/api/records", params={"limit": 5}).json()["records"]
        assert newest[0]["id"] == max(r.json()["id"] for r in answers)
        assert httpx.get(server.url + f"/api/records/{acked[0]}").status_code == 200
        for page in ("/records", "/stats", "/builds", "/crashes", "/population"):
            assert httpx.get(server.url + page).status_code == 200, page

        # A later server creates partitions that are missing (the periodic job).
        # The first month after the old table: within every server's months ahead.
        ahead = sorted(p for p in parts if p != "records_legacy")[0]
        _sql(postgres, database, f"DROP TABLE {ahead}")
        server.stop()
        server = LiveServer(url, log=tmp_path / "server2.log").start(timeout=120)
        deadline = time.monotonic() + 20
        while not _sql(postgres, database, f"SELECT to_regclass('{ahead}')")[0][0]:
            assert time.monotonic() < deadline, "the server did not recreate " + ahead
            time.sleep(0.1)
        assert httpx.post(server.url + "/v2/collector", headers=v2_headers(),
                          content=b"after").status_code == 201
    finally:
        stop.set()
        server.stop()


def _month_ago(n: int, now: float) -> float:
    start = partitions.month_start(now)
    for _ in range(n):
        start = partitions.month_start(start - 1)
    return start


def _purge(store: Store, cutoff: float) -> int:
    """Substrate's purge, as the core runs it (one transaction per call)."""
    source = store.settings.registry.get("substrate")
    return retention.purge_source(store.run_write, store.settings, source, cutoff)


def test_retention_drops_whole_partitions(postgres: TempPostgres, database: str) -> None:
    now = time.time()
    store = Store(Settings(database_url=postgres.url(database)))
    store.start()
    try:
        boundary = _month_ago(4, now)
        engine = store.write_engine
        partitions.convert(engine, boundary=boundary, ahead=7)
        m3, m2, m1 = _month_ago(3, now), _month_ago(2, now), _month_ago(1, now)
        names = {n: partitions.partition_name(n) for n in (m3, m2, m1)}
        sub = "substrate"
        stored = load(store, [
            # Month -3: only expired substrate records: the partition goes whole.
            *[rec(source=sub, ts_reception=m3 + DAY * i) for i in range(1, 4)],
            # Month -2: an audit record is kept: rows are purged, the partition stays.
            rec(source=sub, ts_reception=m2 + DAY), rec(source=sub, ts_reception=m2 + 2 * DAY,
                                                       attrs={"audit": True}),
            # Month -1: a Clear Linux record is not the substrate purge's to delete.
            rec(source=sub, ts_reception=m1 + DAY), rec(ts_reception=m1 + DAY),
            # Now: within the retention.
            rec(source=sub, ts_reception=now - 60),
        ])
        with store.engine.connect() as conn:
            # Commit order across partitions: every row, each once.
            followed = follow.read_after(conn, records, follow.START, 100)
        assert len(followed.rows) == 8
        assert len({r["id"] for r in followed.rows}) == 8

        result = _purge(store, now - DAY)
        assert result == 3 + 1 + 1
        with store.engine.connect() as conn:
            left = {p.name for p in partitions.partitions(conn)}
        assert names[m3] not in left
        assert names[m2] in left and names[m1] in left
        assert partitions.partition_name(partitions.month_start(now)) in left
        rows = _sql(postgres, database, "SELECT source, ts_reception FROM records ORDER BY 2")
        assert [r[0] for r in rows] == [sub, "clearlinux", sub]
        # The keys of the purged records (a dropped partition's and those deleted row by
        # row) are gone with them: a retransmission of one is stored anew.
        assert _keys(postgres, database) == _record_keys(postgres, database)
        assert len(_keys(postgres, database)) == 3
        kept = _sql(postgres, database, "SELECT dedup_key FROM records "
                    "WHERE source = 'clearlinux'")[0][0]
        assert store.run_write(insert_records, [rec(dedup_key=kept)])[0]["duplicate"]
        anew = store.run_write(insert_records, [rec(source=sub, ts_reception=now - 30,
                                                    dedup_key=stored[0]["dedup_key"])])
        assert not anew[0]["duplicate"]
        # Ingest still lands in this month's partition; the sequence survived the drops.
        stored = load(store, [rec()])
        assert stored[0]["id"] > max(r["id"] for r in followed.rows)

        # The months ahead are kept there.
        farthest = sorted(left)[-1]
        _sql(postgres, database, f"DROP TABLE {farthest}")
        assert farthest in store.run_write(partitions.ensure_ahead, now, 7 - 4)
    finally:
        store.close()


def test_a_key_whose_record_is_gone_is_stored_anew(
    postgres: TempPostgres, database: str
) -> None:
    """A record deleted behind the trigger's back (from a partition itself) leaves its
    key claimed: its retransmission is stored again, not acknowledged and dropped."""
    now = time.time()
    store = Store(Settings(database_url=postgres.url(database)))
    store.start()
    try:
        partitions.convert(store.write_engine, boundary=_month_ago(1, now), ahead=2)
        row = rec(ts_reception=now - 60, dedup_key="gone-key")
        first = store.run_write(insert_records, [row])[0]
        assert store.run_write(insert_records, [row])[0]["id"] == first["id"]
        month = partitions.partition_name(partitions.month_start(now - 60))
        _sql(postgres, database, f"DELETE FROM {month} WHERE id = {first['id']}")
        assert _keys(postgres, database) == {"gone-key"}
        later = {**row, "ts_reception": now - 1}
        anew = store.run_write(insert_records, [later, later])
        assert not anew[0]["duplicate"] and anew[1]["duplicate"]
        assert anew[0]["id"] == anew[1]["id"] != first["id"]
        assert _sql(postgres, database, "SELECT ts_reception FROM records_keys") == [
            (later["ts_reception"],)]
        assert store.run_write(insert_records, [row])[0]["id"] == anew[0]["id"]
    finally:
        store.close()


def test_legacy_partition_dropped_keeps_the_sequence(
    postgres: TempPostgres, database: str
) -> None:
    now = time.time()
    store = Store(Settings(database_url=postgres.url(database)))
    store.start()
    try:
        old = _month_ago(3, now)
        load(store, [rec(source="substrate", ts_reception=old + DAY) for _ in range(4)])
        partitions.convert(store.write_engine, boundary=_month_ago(2, now), ahead=4)
        result = _purge(store, now - DAY)
        assert result == 4
        with store.engine.connect() as conn:
            assert "records_legacy" not in {p.name for p in partitions.partitions(conn)}
        assert load(store, [rec()])[0]["id"] == 5
    finally:
        store.close()


def test_partition_cli_refuses_what_it_cannot_do(
    postgres: TempPostgres, database: str, tmp_path: Path
) -> None:
    def run(url: str, *args: str) -> Result:
        return CliRunner().invoke(cli, ["partition", *args], env={"DATABASE_URL": url})

    sqlite = run(f"sqlite:///{tmp_path / 'x.db'}", "records")
    assert sqlite.exit_code == 2 and "needs PostgreSQL" in sqlite.output
    url = postgres.url(database)
    unmigrated = run(url, "records")
    assert unmigrated.exit_code == 1 and "downlink migrate" in unmigrated.output
    assert CliRunner().invoke(cli, ["migrate"], env={"DATABASE_URL": url}).exit_code == 0
    assert "not partitioned" in run(url, "status").output
    assert run(url, "ensure").exit_code == 1
    past = run(url, "records", "--boundary", "2001-01")
    assert past.exit_code == 2 and "future month" in past.output
    bad = run(url, "records", "--boundary", "2031-13")
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
    done = run(url, "records", "--boundary", "2031-02", "--ahead", "1")
    assert done.exit_code == 0, done.output
    again = run(url, "records")
    assert again.exit_code == 1 and "already partitioned" in again.output
    listed = run(url, "status").output.splitlines()
    assert listed == [
        "records_legacy\tMINVALUE\t2031-02-01\t~0 rows",
        "records_p203102\t2031-02-01\t2031-03-01\t~0 rows",
        "records_p203103\t2031-03-01\t2031-04-01\t~0 rows",
    ]
    assert run(url, "ensure").output.strip() == "every partition is there"
