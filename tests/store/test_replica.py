"""DATABASE_READ_URL against a real streaming replica (pg_basebackup -R), over real HTTP.

The replica's replay is paused with ``pg_wal_replay_pause()``: pages and API reads then
show the data as it was (so they do read the replica), while the collector's answer,
an admin edit's own answer and the page its POST-redirect lands on show the new data.
Backups are taken from the replica as docs/deployment.md shows and restored.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from downlink.settings import Settings, SettingsError
from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres
from tests.wire import v2_headers

pytestmark = pytest.mark.postgres


def _sql(pg: TempPostgres, db: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname={db}",
                         autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[TempPostgres, TempPostgres]]:
    primary = TempPostgres().start_primary()
    try:
        replica = primary.start_replica()
        try:
            yield primary, replica
        finally:
            replica.stop()
    finally:
        primary.stop()


def _caught_up(primary: TempPostgres, replica: TempPostgres, db: str) -> None:
    target = _sql(primary, db, "SELECT pg_current_wal_lsn()")[0][0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = _sql(replica, db, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        if done[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError("the replica did not catch up")


def _wait_database(replica: TempPostgres, db: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _sql(replica, db, "SELECT 1")
            return
        except psycopg.OperationalError:
            time.sleep(0.05)
    raise AssertionError(f"database {db} never reached the replica")


@pytest.fixture
def served(pair: tuple[TempPostgres, TempPostgres], tmp_path: Path) -> Iterator[
    tuple[LiveServer, str]
]:
    primary, replica = pair
    db = "r_" + uuid.uuid4().hex[:12]
    url = primary.create_database(db)
    _wait_database(replica, db)
    server = LiveServer(url, env={"DATABASE_READ_URL": replica.url(db)},
                        log=tmp_path / "server.log").start(timeout=120)
    try:
        yield server, db
    finally:
        server.stop()
        _sql(replica, db, "SELECT pg_wal_replay_resume()")
        primary.drop_database(db)


def _post(server: LiveServer, classification: str) -> dict[str, object]:
    headers = v2_headers({"classification": classification})
    r = httpx.post(server.url + "/v2/collector", headers=headers, content=b"payload")
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def _classes(client: httpx.Client) -> list[str]:
    r = client.get("/api/records", params={"limit": 100})
    assert r.status_code == 200, r.text
    return [rec["classification"] for rec in r.json()["records"]]


def test_reads_go_to_the_replica_and_writes_see_themselves(
    pair: tuple[TempPostgres, TempPostgres], served: tuple[LiveServer, str]
) -> None:
    primary, replica = pair
    server, db = served
    _post(server, "org.clearlinux/before/pause")
    _caught_up(primary, replica, db)
    anonymous = httpx.Client(base_url=server.url)
    admin = httpx.Client(base_url=server.url)
    assert _classes(anonymous) == ["org.clearlinux/before/pause"]

    _sql(replica, db, "SELECT pg_wal_replay_pause()")
    # The collector's answer is what the primary stored, whatever the replica lags.
    stored = _post(server, "org.clearlinux/during/pause")
    assert stored["classification"] == "org.clearlinux/during/pause"
    assert isinstance(stored["id"], int)
    # Pages and the API read the replica: the new record is not there yet.
    assert _classes(anonymous) == ["org.clearlinux/before/pause"]
    assert anonymous.get(f"/api/records/{stored['id']}").status_code == 404
    assert "org.clearlinux/during/pause" not in anonymous.get("/records").text

    # An admin edit: its own JSON answer (the regroup job it queued) comes from the
    # primary, and so does the page its form post redirects to.
    frame = json.dumps(["never_guilty()", "libx.so"])
    r = admin.post("/crashes/blacklist", data={"frame": frame},
                   headers={"accept": "application/json"})
    assert r.status_code == 202, r.text
    assert r.json()["job"]["state"] in ("pending", "running", "done")
    assert "downlink_lsn" in r.cookies
    frame2 = json.dumps(["also_never()", "liby.so"])
    r = admin.post("/crashes/blacklist", data={"frame": frame2, "next": "/crashes/blacklist"},
                   follow_redirects=True)
    assert r.status_code == 200 and r.url.path == "/crashes/blacklist"
    assert "also_never()" in r.text and "never_guilty()" in r.text
    listed = admin.get("/crashes/blacklist.json").json()["blacklist"]
    assert {e["function"] for e in listed} == {"never_guilty()", "also_never()"}
    # The admin's later reads see everything up to its write (the record too).
    assert "org.clearlinux/during/pause" in _classes(admin)
    # Someone without the admin's cookie still reads the paused replica.
    assert anonymous.get("/crashes/blacklist.json").json()["blacklist"] == []
    # A forged cookie asks for nothing it could not ask for anyway: it is ignored.
    forged = httpx.Client(base_url=server.url, cookies={"downlink_lsn": "x'; DROP"})
    assert forged.get("/crashes/blacklist.json").status_code == 200

    _sql(replica, db, "SELECT pg_wal_replay_resume()")
    _caught_up(primary, replica, db)
    assert sorted(_classes(anonymous)) == [
        "org.clearlinux/before/pause", "org.clearlinux/during/pause"
    ]
    assert {e["function"] for e in anonymous.get("/crashes/blacklist.json").json()[
        "blacklist"]} == {"never_guilty()", "also_never()"}
    # The reads of the pages ran on the replica's connections.
    sessions = _sql(replica, db, "SELECT count(*) FROM pg_stat_activity "
                                 f"WHERE datname = '{db}' AND backend_type = 'client backend'")
    assert sessions[0][0] >= 1


def test_pages_answer_from_the_primary_while_the_replica_is_down(
    tmp_path: Path,
) -> None:
    primary = TempPostgres().start_primary()
    try:
        replica = primary.start_replica()
        db = "down_" + uuid.uuid4().hex[:8]
        url = primary.create_database(db)
        _wait_database(replica, db)
        server = LiveServer(url, env={"DATABASE_READ_URL": replica.url(db)},
                            log=tmp_path / "server.log").start(timeout=120)
        try:
            _post(server, "org.clearlinux/one/record")
            replica.stop()
            for _ in range(3):
                got = _classes(httpx.Client(base_url=server.url))
                assert got == ["org.clearlinux/one/record"]
            assert httpx.get(server.url + "/records").status_code == 200
        finally:
            server.stop()
    finally:
        primary.stop()


def test_backup_from_the_replica_restores(
    pair: tuple[TempPostgres, TempPostgres], served: tuple[LiveServer, str], tmp_path: Path
) -> None:
    """docs/deployment.md's backup and restore, step by step."""
    primary, replica = pair
    server, db = served
    ids = {_post(server, f"org.clearlinux/backup/n{i}")["id"] for i in range(5)}
    _caught_up(primary, replica, db)
    backups = replica.root / "backups"
    restored = TempPostgres()
    try:
        # Backup: a compressed tar base backup with its WAL, taken from the replica.
        replica.run_as_server_user(
            str(replica.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(replica.port),
            "-U", "postgres", "-D", str(backups / "latest"), "-Ft", "-z", "-X", "stream",
            "-c", "fast",
        )
        # Restore: unpack into an empty data directory and start it.
        data = restored.datadir
        data.mkdir(mode=0o700)
        (data / "pg_wal").mkdir(mode=0o700)
        subprocess.run(["tar", "-xzf", str(backups / "latest" / "base.tar.gz"), "-C",
                        str(data)], check=True)
        subprocess.run(["tar", "-xzf", str(backups / "latest" / "pg_wal.tar.gz"), "-C",
                        str(data / "pg_wal")], check=True)
        # A backup of a standby restores as a standby unless told otherwise.
        (data / "standby.signal").unlink(missing_ok=True)
        restored.adopt_datadir()
        restored._launch()
        rows = _sql(restored, db, "SELECT id FROM records")
        assert ids <= {row[0] for row in rows}
        assert _sql(restored, db, "SELECT pg_is_in_recovery()")[0][0] is False
    finally:
        restored.stop()


def test_read_url_needs_postgresql() -> None:
    with pytest.raises(SettingsError, match="DATABASE_READ_URL"):
        Settings(database_url="sqlite:///x.db", database_read_url="postgresql://h/db")
    with pytest.raises(SettingsError, match="DATABASE_READ_URL"):
        Settings(database_url="postgresql://h/db", database_read_url="sqlite:///x.db")
    assert Settings(database_url="postgresql://h/db", database_read_url="postgresql://r/db")
