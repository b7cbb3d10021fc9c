"""``downlink spool``: operator errors are one clear line; nothing changes on failure."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from downlink.cli.main import cli
from downlink.store.envelope import Envelope
from downlink.store.spool import Spool, Spooled
from downlink.testing.postgres import free_port


def _spool_with_one_set_aside(directory: Path) -> int:
    spool = Spool(directory, 100_000)
    spool.append("records", [Envelope({"payload": "refused one", "classification": "a/b/c",
                                       "source": "x"})])
    [entry] = spool.head(10)
    spool.settle(entry.seq, [Spooled(entry.seq, entry.sink, entry.item, "CheckViolation: no")])
    seq = entry.seq
    spool.close()
    return seq


def test_operator_mistakes_are_errors(tmp_path: Path) -> None:
    runner = CliRunner(env={"DOWNLINK_SPOOL_DIR": ""})
    res = runner.invoke(cli, ["spool", "list"])
    assert res.exit_code == 2 and "no spool" in res.output
    res = runner.invoke(cli, ["spool", "list", "--spool-dir", str(tmp_path / "none")])
    assert res.exit_code == 1 and "spool.db is missing" in res.output
    seq = _spool_with_one_set_aside(tmp_path)
    res = runner.invoke(cli, ["spool", "export", "--spool-dir", str(tmp_path), "--id", "999"])
    assert res.exit_code == 1 and "no set-aside record with id 999" in res.output
    res = runner.invoke(cli, ["spool", "drop", "--spool-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--all" in res.output
    res = runner.invoke(cli, ["spool", "export", "--spool-dir", str(tmp_path)])
    assert res.exit_code == 0
    [line] = res.stdout_bytes.splitlines()
    assert orjson.loads(line)["set_aside"] == {"id": seq, "error": "CheckViolation: no"}


def test_retry_with_the_database_away_changes_nothing(tmp_path: Path) -> None:
    seq = _spool_with_one_set_aside(tmp_path)
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    res = CliRunner().invoke(cli, ["spool", "retry", "--spool-dir", str(tmp_path),
                                   "--database-url", url])
    assert res.exit_code == 1 and "the database is unavailable, nothing retried" in res.output
    [still] = Spool(tmp_path, 1).refused()
    assert (still.seq, still.error) == (seq, "CheckViolation: no")
