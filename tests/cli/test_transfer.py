"""downlink export / import / migrate from the command line."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner
from fastapi.testclient import TestClient

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.store.database import Store
from downlink.store.queries.records import RecordFilter, list_records
from tests.wire import v2_headers


def test_export_then_import_round_trips_every_field(
    client: TestClient, db_url: str, tmp_path: Path
) -> None:
    for payload in (b"one", "caf\u00e9 \u2603".encode(), b"x" * 5000):
        assert (
            client.post("/v2/collector", headers=v2_headers(), content=payload).status_code == 201
        )
    dump = tmp_path / "dump.ndjson"
    runner = CliRunner()
    out = runner.invoke(cli, ["export", str(dump), "--database-url", db_url])
    assert out.exit_code == 0, out.output
    lines = dump.read_bytes().splitlines()
    assert len(lines) == 3

    target = f"sqlite:///{tmp_path / 'copy.db'}"
    res = runner.invoke(cli, ["import", str(dump), "--database-url", target])
    assert res.exit_code == 0, res.output
    assert "imported 3 records" in res.output
    again = runner.invoke(cli, ["import", str(dump), "--database-url", target])
    assert "imported 0 records (3 already present)" in again.output

    source_rows = Store(Settings(database_url=db_url)).run(list_records, RecordFilter(), 10)
    copy_rows = Store(Settings(database_url=target)).run(list_records, RecordFilter(), 10)
    skip = {"id", "source"}
    strip = [{k: v for k, v in r.items() if k not in skip} for r in source_rows]
    assert strip == [{k: v for k, v in r.items() if k not in skip} for r in copy_rows]


def test_import_reports_the_bad_line_and_writes_nothing(tmp_path: Path) -> None:
    dump = tmp_path / "bad.ndjson"
    good = {
        "classification": "a/b/c",
        "ts_capture": "2026-01-01 00:00:00 UTC",
        "ts_reception": "2026-01-01 00:00:01 UTC",
        "severity": 1,
    }
    dump.write_bytes(orjson.dumps(good) + b"\n" + b"{not json}\n")
    target = f"sqlite:///{tmp_path / 't.db'}"
    res = CliRunner().invoke(cli, ["import", str(dump), "--database-url", target])
    assert res.exit_code != 0
    assert "bad.ndjson:2" in res.output
    assert not (tmp_path / "t.db").exists()


def test_migrate_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    runner = CliRunner()
    pending = runner.invoke(cli, ["migrate", "--check", "--database-url", url])
    assert pending.exit_code == 1 and "pending: 0001" in pending.output
    assert not (tmp_path / "m.db").exists(), "--check must not create the database"
    listed = [line.split(": ", 1)[1] for line in pending.output.splitlines() if "pending: " in line]
    assert listed == sorted(listed) and listed[:2] == ["0001", "0002_substrate"]
    assert runner.invoke(cli, ["migrate", "--database-url", url]).exit_code == 0
    done = runner.invoke(cli, ["migrate", "--check", "--database-url", url])
    assert done.exit_code == 0 and "up to date" in done.output


def test_bad_database_url_is_a_cli_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["migrate", "--database-url", "nosuchdb://x"])
    assert res.exit_code != 0
    assert "Traceback" not in res.output and "DATABASE_URL must be" in res.output


def test_migrate_check_of_an_unreachable_database_is_not_a_failed_migration(
    tmp_path: Path,
) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    res = CliRunner().invoke(cli, ["migrate", "--check", "--database-url", url])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "cannot check the migrations" in res.output
    assert "migration failed" not in res.output


def test_export_to_a_missing_directory_is_a_cli_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    res = CliRunner().invoke(cli, ["export", "/nonexistent/x.ndjson", "--database-url", url])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "cannot write /nonexistent/x.ndjson: No such file or directory" in res.output
    assert not (tmp_path / "e.db").exists()
