"""Deleting every derived row and running ``downlink reprocess`` restores the dashboards.

Real processes throughout: records arrive through ``downlink import`` (60 days of a
generated fleet) and the collector (the captured client requests), a ``downlink
serve`` derives the rollups after the ack, the JSON twin of every dashboard is
snapshotted, every rollup row and every crash record's ``guilty_id`` are deleted, and
``downlink reprocess`` (the CLI, a subprocess, beside the running server) rebuilds
them: the twins are identical, and again after a second reprocess.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from sqlalchemy import delete, update

from downlink.settings import Settings
from downlink.sources.clearlinux.rollups import ROLLUP_TABLES
from downlink.store.engine import make_engine
from downlink.store.tables import records
from downlink.store.transfer import export_row
from downlink.testing import cli
from downlink.testing.consumers import wait_caught_up
from downlink.testing.generate import RecordGenerator
from downlink.testing.live import LiveServer
from tests.sources.clearlinux.derived import recount, twins
from tests.wire import load_capture, replay

FIXTURES = Path("/work/shared/fixtures/clearlinux")
DAYS = 60


def _downlink(*args: str, db_url: str) -> str:
    done = cli.run([*args, "--database-url", db_url], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_delete_derived_rows_then_reprocess_restores_every_dashboard(
    db_url: str, tmp_path: Path
) -> None:
    dump = tmp_path / "fleet.ndjson"
    # Half the machine checks with a status of their own: more statuses than the MCE
    # page lists, so its list ends with the rest ("other"), ranked from the totals.
    gen = RecordGenerator(seed=7, machines=40, days=DAYS - 2, random_mce_status=0.5)
    with dump.open("wb") as out:
        for i, row in enumerate(gen.rows(1500)):
            out.write(orjson.dumps(export_row({**row, "id": i + 1})) + b"\n")
    _downlink("migrate", db_url=db_url)
    assert "imported 1500 records" in _downlink("import", str(dump), db_url=db_url)

    # One server throughout, as an operator would reprocess: the pages read the derived
    # tables as they are (no cache), so each snapshot shows what the last step left.
    server = LiveServer(db_url, workers=2, log=tmp_path / "serve.log").start()
    engine = make_engine(Settings(database_url=db_url), writer=True)
    try:
        host, port = "127.0.0.1", server.port
        for capture in sorted(FIXTURES.glob("v*.http")):
            status, _ = replay(load_capture(capture), host, port)
            assert status in (200, 201), capture.name
        wait_caught_up(server.url, timeout=120)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            before = twins(http, DAYS)
            assert before["/crashes.json?from=" + _since()]["guilties"], "no crash groups"
            assert before["/mce.json?from=" + _since()]["by_status"][-1][0] == "other"
            check = recount(engine)
            assert check["got"] == {k: check["want"][k] for k in check["got"]}

            with engine.begin() as conn:
                for table in ROLLUP_TABLES:
                    conn.execute(delete(table))
                conn.execute(update(records).values(guilty_id=None))
            assert twins(http, DAYS) != before  # the dashboards did lose their data

            first = (datetime.now(UTC).date() - timedelta(days=DAYS)).isoformat()
            args = ("reprocess", "--source", "clearlinux", "--since", first, "--until",
                    _today())
            out = _downlink(*args, db_url=db_url)
            assert "through clearlinux_crashes" in out and "through clearlinux_rollups" in out
            assert twins(http, DAYS) == before
            check = recount(engine)
            assert check["got"] == {k: check["want"][k] for k in check["got"]}

            _downlink(*args, db_url=db_url)  # twice: the same again
            assert twins(http, DAYS) == before
    finally:
        engine.dispose()
        server.stop()


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _since() -> str:
    return (datetime.now(UTC).date() - timedelta(days=DAYS)).isoformat()
