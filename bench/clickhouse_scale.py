"""Every ClickHouse-backed view at scale (``python bench/clickhouse.py --scale N``).

Loading 100M records through HTTP and the shippers would measure ingestion, not the
reads, and take days on a small machine. So the rows are generated *inside* the engine
with ``INSERT … SELECT … FROM numbers(N)``, in exactly the shape the shippers write
(the tables are created by the same versioned DDL, ``analytics.schema``):

* ``records``: N records over 90 days: Clear Linux (hello/swupd, 12 % crashes, 4 % MCE,
  1 % thermal) and 2 % substrate messages, 100,000 machines (500 peers), 40 builds,
  1 in 1,000 stored flagged;
* ``clearlinux_crashes``: the crash records of those, with frames whose first one
  picks one of ``--groups`` crash groups (skewed: a few groups hold most crashes);
* ``ooni_fastpath``: ``--ooni-rows`` scored measurements over 180 days (default N).

The SQL side is what the ClickHouse reads join by key: a small SQLite database with
the crash groups (``guilty``), one never-guilty frame and one hidden group. Each view
is timed through the function its page or API calls (the ClickHouse twin: the same
Python after the query), median of ``--repeat``, wall and CPU time of this process
(chdb runs in it: its CPU time includes the engine's threads).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from downlink.analytics import records as records_table
from downlink.analytics import schema
from downlink.analytics.client import Analytics, connect
from downlink.settings import Settings
from downlink.sources.clearlinux import analytics as dashboards
from downlink.sources.clearlinux import crash_analytics, mce_analytics
from downlink.sources.clearlinux.tables import guilty, guilty_blacklist
from downlink.sources.ooni import aggregation, clickhouse, search
from downlink.sources.substrate import analytics as substrate
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.store.queries.period import Period, RollupFilter
from downlink.store.queries.records import RecordFilter

DAYS = 90
MACHINES = 100_000
BUILDS = 40


def _records_sql(ch: Analytics, n: int, now: float) -> str:
    names = ", ".join(c for c, _ in records_table.COLUMNS)
    return f"""
INSERT INTO {ch.table('records')} ({names})
SELECT
  number + 1, if(k < 2, 'substrate', 'clearlinux'), 4,
  multiIf(k < 2, concat('substrate/system.', ['interval', 'connected', 'block'][h2 % 3 + 1]),
          k < 12, 'org.clearlinux/crash/clr', k < 14, 'org.clearlinux/kernel/warning',
          k < 17, 'org.clearlinux/mce/corrected', k < 18, 'org.clearlinux/mce/SRAO',
          k < 19, 'org.clearlinux/mce/thermal', k < 60, 'org.clearlinux/hello/world',
          'org.clearlinux/swupd/error'),
  toInt32(1 + h2 % 4),
  if(k < 2, concat('12D3KooW', toString(h3 % 500)), leftPad(lower(hex(h3 % {MACHINES})), 32, '0')),
  ts, ts, 'x86_64',
  ['Intel Corporation|NUC7i5BNH|J31144-313', 'Dell Inc.|XPS 13|1.0', 'QEMU|Standard PC|1.0',
   'LENOVO|ThinkPad|N2'][h4 % 4 + 1],
  toString(31000 + intDiv(ts - {now - DAYS * 86400:.0f}, {DAYS * 86400 // BUILDS}) - h4 % 3),
  '6.1.38', 1, 'clear-linux-os', '', '', '', lower(hex(h1)), false, 'tid',
  if(k BETWEEN 14 AND 18, concat('CPU 1 BANK 7\\nSTATUS ', lower(hex(h4)), ' MCGSTATUS 0\\n'),
     'payload'),
  NULL, NULL, false, {now:.0f}, if(h5 % 1000 = 0, true, NULL)
FROM (
  SELECT number, sipHash64(number, 1) AS h1, h1 % 100 AS k, sipHash64(number, 2) AS h2,
         sipHash64(number, 3) AS h3, sipHash64(number, 4) AS h4, sipHash64(number, 5) AS h5,
         toFloat64({now:.0f} - h2 % {DAYS * 86400}) AS ts
  FROM numbers({n})
)"""


def _crashes_sql(ch: Analytics, groups: int) -> str:
    names = ", ".join(c for c, _ in crash_analytics.COLUMNS)
    return f"""
INSERT INTO {ch.table(crash_analytics.NAME)} ({names})
SELECT id, ts_reception, machine_id, build, classification, ifNull(sender_flagged, false),
  [(concat('fn', toString(g), '()'), 'libapp.so'), ('common()', 'libc.so.6'),
   ('???', '/usr/bin/app')],
  concat('/usr/bin/app', toString(g % 50)), shipped_at
FROM (
  SELECT *, toUInt32(pow((sipHash64(id, 9) % 1000000) / 1000000.0, 3) * {groups}) AS g
  FROM {ch.table('records')}
  WHERE classification IN ('org.clearlinux/crash/clr', 'org.clearlinux/kernel/warning')
)"""


def _ooni_sql(ch: Analytics, n: int, now: float) -> str:
    return f"""
INSERT INTO {ch.table(clickhouse.TABLE.name)} (measurement_uid, report_id, input, probe_cc,
  probe_asn, test_name, test_start_time, measurement_start_time, platform, anomaly,
  confirmed, msm_failure, domain, software_name, update_time, ts_reception)
SELECT concat('20250101', leftPad(toString(number), 12, '0'), '_', lower(hex(h1))),
  concat('r', toString(intDiv(number, 50))), concat('https://site', toString(h2 % 1000),
  '.example/'),
  ['IT', 'DE', 'IR', 'CN', 'RU', 'US', 'BR', 'IN', 'TR', 'EG', 'ID', 'MX'][h1 % 12 + 1],
  toInt64(1 + h2 % 400),
  ['web_connectivity', 'tor', 'signal', 'whatsapp', 'telegram', 'dnscheck'][h3 % 6 + 1],
  t, t, 'linux', h4 % 10 = 0, h4 % 50 = 0, h4 % 20 = 1,
  concat('site', toString(h2 % 1000), '.example'), 'ooniprobe', {now:.0f}, t
FROM (
  SELECT number, sipHash64(number, 11) AS h1, sipHash64(number, 12) AS h2,
         sipHash64(number, 13) AS h3, sipHash64(number, 14) AS h4,
         toFloat64({now:.0f} - h2 % {180 * 86400}) AS t
  FROM numbers({n})
)"""


def generate(ch: Analytics, n: int, ooni_rows: int, groups: int, now: float) -> dict[str, float]:
    """Create the tables and fill them; seconds per table."""
    schema.apply(ch, [schema.Planned(t, None) for t in
                      (records_table.TABLE, crash_analytics.TABLE, clickhouse.TABLE)])
    took: dict[str, float] = {}
    for name, sql in (("records", _records_sql(ch, n, now)),
                      (crash_analytics.NAME, _crashes_sql(ch, groups)),
                      (clickhouse.TABLE.name, _ooni_sql(ch, ooni_rows, now))):
        start = time.perf_counter()
        ch.command(sql)
        took[name] = time.perf_counter() - start
        count = ch.query(f"SELECT count() FROM {ch.table(name)}")[0][0]
        print(f"generated {count:,} rows of {name} in {took[name]:.1f} s", flush=True)
    return took


def sql_side(folder: Path, groups: int) -> Any:
    """The SQL store's small part: crash groups, a never-guilty frame, a hidden group."""
    url = f"sqlite:///{folder / 'sql.db'}"
    engine = create_engine(_normalise(url))
    migrate.upgrade(engine, sources=Settings(database_url=url).registry)
    with engine.begin() as conn:
        conn.execute(insert(guilty), [
            {"function": f"fn{i}()", "module": "libapp.so", "hide": i == 3}
            for i in range(groups + 1)
        ])
        conn.execute(insert(guilty_blacklist), [{"function": "main()", "module": "app"}])
    return engine


def views(ch: Analytics, conn: Any, now: float) -> list[tuple[str, Callable[[], Any]]]:
    """Every ClickHouse-backed view: its name and the call its page or API makes."""
    week, month, quarter = Period.past(7), Period.past(30), Period.past(DAYS)
    top = crash_analytics.top_guilties(ch, conn, week, limit=1)
    gid = int(top[0]["guilty_id"]) if top else 1
    agg = aggregation.parse({
        "axis_x": "measurement_start_day", "axis_y": "probe_cc",
        "since": (datetime.now(UTC) - timedelta(days=180)).strftime("%Y-%m-%d"),
        "until": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
    })
    newest = search.parse({"limit": "100", "probe_cc": "IT"}, 1000)

    def listing(f: RecordFilter) -> Callable[[], Any]:
        return lambda: records_table.records_by_ids(
            ch, [i for i, _ in records_table.record_sizes(ch, f, 100)])

    return [
        ("/api/records, newest 100", listing(RecordFilter())),
        ("/api/records?classification=…/crash/clr&build=31045", listing(
            RecordFilter(classification="org.clearlinux/crash/clr", build="31045"))),
        ("/stats, 30 days", lambda: dashboards.stats(ch, month, RollupFilter())),
        ("/builds, 30 days", lambda: dashboards.records_per_build(ch, month, RollupFilter())),
        ("/population, weeks of 90 days",
         lambda: dashboards.machines_per_build(ch, quarter, "week")),
        ("/crashes, 7 days", lambda: crash_analytics.top_guilties(ch, conn, week)),
        ("/crashes, 90 days", lambda: crash_analytics.top_guilties(ch, conn, quarter)),
        ("/crashes/{top group}, 7 days",
         lambda: crash_analytics.group_detail(ch, conn, gid, week, 200, 0)),
        ("/crashes/{top group}, 90 days",
         lambda: crash_analytics.group_detail(ch, conn, gid, quarter, 200, 0)),
        ("/crashes/{top group}/backtraces, 7 days",
         lambda: crash_analytics.group_records(ch, conn, gid, None, None, week, 50)),
        ("/mce, 90 days", lambda: mce_analytics.mce(ch, quarter)),
        ("/thermal, 5 weeks", lambda: mce_analytics.thermal(ch, Period.past(35))),
        ("/substrate, message types of 60 minutes",
         lambda: substrate.message_types(ch, now - 3600)),
        ("/api/v1/aggregation, 180 days by day x probe_cc",
         lambda: clickhouse.run_aggregation(ch, agg)),
        ("/api/v1/measurements?probe_cc=IT, newest 100",
         lambda: clickhouse.run_search(ch, newest)),
    ]


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    """(first, median, median CPU) seconds."""
    walls, cpus = [], []
    for _ in range(repeat + 1):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return walls[0], statistics.median(walls[1:]), statistics.median(cpus[1:])


def run(n: int, ooni_rows: int, groups: int, repeat: int, folder: str | None) -> str:
    """Generate, time every view; the Markdown table of the results."""
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="downlink-chscale-", dir=folder) as tmp:
        ch = connect(f"chdb://{Path(tmp) / 'chdb'}?database=scale")
        took = generate(ch, n, ooni_rows, groups, now)
        engine = sql_side(Path(tmp), groups)
        disk = ch.query(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = 'scale'"
        )[0][0]
        lines = [
            f"Generated in the engine: {n:,} records ({took['records']:.0f} s), their "
            f"crash rows ({took[crash_analytics.NAME]:.0f} s), {ooni_rows:,} OONI "
            f"measurements ({took[clickhouse.TABLE.name]:.0f} s); "
            f"{int(disk) / 2**30:.1f} GiB on disk.",
            "",
            "| view | first ms | median ms | CPU ms (median) |",
            "|---|---|---|---|",
        ]
        with engine.connect() as conn:
            for name, fn in views(ch, conn, now):
                first, median, cpu = _timed(fn, repeat)
                ms = (f"{x * 1000:,.0f}" for x in (first, median, cpu))
                line = f"| {name} | {' | '.join(ms)} |"
                print(line, flush=True)
                lines.append(line)
        engine.dispose()
        ch.close()
    return "\n".join(lines)
