"""Reprocessing part of the history (from mid-week to mid-month) gives back exactly the
rollups of counting every record once, week and month machine sets included."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy import Connection, select

from downlink.cli.main import cli
from downlink.settings import Settings
from downlink.sources.clearlinux.rollups import DAY, ROLLUP_TABLES
from downlink.store.database import Store
from downlink.testing.generate import RecordGenerator
from tests.web.helpers import load

Snapshot = dict[str, list[tuple[object, ...]]]


def _snapshot(store: Store) -> Snapshot:
    def read(conn: Connection) -> Snapshot:
        out = {t.name: sorted(tuple(r) for r in conn.execute(select(t))) for t in ROLLUP_TABLES}
        out["groups"] = sorted(tuple(r) for r in conn.exec_driver_sql(
            "SELECT id, guilty_id FROM records WHERE guilty_id IS NOT NULL"))
        return out

    return store.run(read)


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).date().isoformat()


def test_reprocessing_a_middle_range_restores_every_rollup(db_url: str) -> None:
    store = Store(Settings(database_url=db_url))
    store.migrate()
    try:
        # A third of the machine checks with a status of their own (the others' four
        # statuses span the whole history: their totals straddle the range).
        gen = RecordGenerator(seed=5, machines=30, days=70, random_mce_status=0.3)
        rows = list(gen.rows(3000))
        for start in range(0, len(rows), 1000):
            load(store, rows[start:start + 1000])
        before = _snapshot(store)
        assert before["rollup_mce_machines"] and before["rollup_guilty_machine_totals"]
        assert len(before["rollup_mce_statuses"]) > 20 and before["rollup_mce_build_statuses"]
        days = sorted({int(r["ts_reception"] // DAY) for r in rows})
        # A Wednesday to the 10th of a later month: every boundary cuts a week and a month.
        first = next(d for d in days[5:] if (d + 3) % 7 == 2)
        last = next(d for d in days if d > first + 20 and _date(d).endswith("-10"))
        args = ["reprocess", "--source", "clearlinux", "--since", _date(first),
                "--until", _date(last), "--database-url", db_url]
        for _ in range(2):
            out = CliRunner().invoke(cli, args)
            assert out.exit_code == 0, out.output
            assert "through clearlinux_rollups" in out.output
            assert _snapshot(store) == before
    finally:
        store.close()
