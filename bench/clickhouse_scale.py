"""Every ClickHouse-backed view at scale (``python bench/clickhouse.py --scale N``).

Loading 100M records through HTTP and the shippers would measure ingestion, not the
reads, and take days on a small machine. So the rows are generated *inside* the engine
with ``INSERT … SELECT … FROM numbers(N)``, in exactly the shape the shippers write
(the tables are created by the same versioned DDL, ``analytics.schema``):

* ``records``: N records over 90 days: Clear Linux (hello/swupd, 12 % crashes, 4 % MCE,
  1 % thermal) and 2 % substrate messages, 100,000 machines (500 peers), 40 builds,
  1 in 1,000 stored flagged; a crash record's payload names its process and its
  ``guilty_id`` is its group's (what a shipper ships once the crash consumer ran);
* ``clearlinux_crashes``: the crash records of those, with frames whose first one
  picks one of ``--groups`` crash groups (skewed: a few groups hold most crashes);
* ``ooni_fastpath``: ``--ooni-rows`` scored measurements over 180 days (default N).

Row ``i`` is the same whatever the steps it was generated in, so the tables can be
filled to a first count, then grown.

The SQL side is what the ClickHouse reads join by key: a small SQLite database with
the crash groups (``guilty``), one never-guilty frame and one hidden group. Each view
is timed through the function its page or API calls (the ClickHouse twin: the same
Python after the query), first call then median of ``--repeat``, wall and CPU time of
this process (chdb runs in it: its CPU time includes the engine's threads).

With ``--pg-records M`` (:func:`run`'s ``pg_records``) the tables are first filled to M
records (and the same share of the OONI rows), every view timed, those rows copied into
PostgreSQL with what its pages read (``clickhouse_pg``), every view timed there through
the SQL store's functions (CPU: this process and the cluster's processes) and its
answer compared with ClickHouse's, the cluster dropped; then chdb grows to N and every
view is timed again. PostgreSQL's bytes per record give the largest count the disk
holds.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import clickhouse_pg
from sqlalchemy import Connection, create_engine, insert

from downlink.analytics import records as records_table
from downlink.analytics import schema
from downlink.analytics.client import Analytics, connect
from downlink.settings import Settings
from downlink.sources.clearlinux import analytics as dashboards
from downlink.sources.clearlinux import crash_analytics, mce_analytics
from downlink.sources.clearlinux.queries import builds as sql_builds
from downlink.sources.clearlinux.queries import crashes as sql_crashes
from downlink.sources.clearlinux.queries import mce as sql_mce
from downlink.sources.clearlinux.queries import population as sql_population
from downlink.sources.clearlinux.tables import guilty, guilty_blacklist
from downlink.sources.ooni import aggregation, clickhouse, search
from downlink.sources.substrate import analytics as substrate
from downlink.sources.substrate import queries as substrate_queries
from downlink.store import migrate
from downlink.store.engine import _normalise
from downlink.store.queries import records as sql_records
from downlink.store.queries.period import Period, RollupFilter
from downlink.store.queries.records import RecordFilter

DAYS = 90
MACHINES = 100_000
BUILDS = 40


def _records_sql(ch: Analytics, start: int, count: int, groups: int, now: float) -> str:
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
  multiIf(k BETWEEN 14 AND 18,
          concat('CPU 1 BANK 7\\nSTATUS ', lower(hex(h4)), ' MCGSTATUS 0\\n'),
          k BETWEEN 2 AND 13, concat('Process: /usr/bin/app', toString(g % 50), '\\n'),
          'payload'),
  NULL, if(k BETWEEN 2 AND 13, g + 1, NULL), false, {now:.0f}, if(h5 % 1000 = 0, true, NULL)
FROM (
  SELECT number, sipHash64(number, 1) AS h1, h1 % 100 AS k, sipHash64(number, 2) AS h2,
         sipHash64(number, 3) AS h3, sipHash64(number, 4) AS h4, sipHash64(number, 5) AS h5,
         toFloat64({now:.0f} - h2 % {DAYS * 86400}) AS ts, number + 1 AS id,
         {group_sql(groups)} AS g
  FROM numbers({start}, {count})
)"""


def group_sql(groups: int) -> str:
    """A crash record's group (0 … groups - 1) from its id: skewed, a few groups hold
    most crashes."""
    return f"toUInt32(pow((sipHash64(id, 9) % 1000000) / 1000000.0, 3) * {groups})"


def _crashes_sql(ch: Analytics, groups: int, after: int) -> str:
    names = ", ".join(c for c, _ in crash_analytics.COLUMNS)
    return f"""
INSERT INTO {ch.table(crash_analytics.NAME)} ({names})
SELECT id, ts_reception, machine_id, build, classification, ifNull(sender_flagged, false),
  [(concat('fn', toString(g), '()'), 'libapp.so'), ('common()', 'libc.so.6'),
   ('???', '/usr/bin/app')],
  concat('/usr/bin/app', toString(g % 50)), shipped_at
FROM (
  SELECT *, {group_sql(groups)} AS g
  FROM {ch.table('records')}
  WHERE classification IN ('org.clearlinux/crash/clr', 'org.clearlinux/kernel/warning')
    AND id > {after}
)"""


def _ooni_sql(ch: Analytics, start: int, count: int, now: float) -> str:
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
  FROM numbers({start}, {count})
)"""


def generate(
    ch: Analytics, have: tuple[int, int], want: tuple[int, int], groups: int, now: float
) -> dict[str, float]:
    """Create the tables and fill them from ``have`` (records, OONI measurements) up
    to ``want``; seconds per table. Row ``i`` is the same whatever the steps."""
    schema.apply(ch, [schema.Planned(t, None) for t in
                      (records_table.TABLE, crash_analytics.TABLE, clickhouse.TABLE)])
    took: dict[str, float] = {}
    for name, sql in (("records", _records_sql(ch, have[0], want[0] - have[0], groups, now)),
                      (crash_analytics.NAME, _crashes_sql(ch, groups, have[0])),
                      (clickhouse.TABLE.name,
                       _ooni_sql(ch, have[1], want[1] - have[1], now))):
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


@dataclass(frozen=True)
class View:
    """A ClickHouse-backed view: the call its page or API makes on ClickHouse, and the
    call it makes on the SQL store (``sql(conn)``), with the same arguments."""

    name: str
    ch: Callable[[], Any]
    sql: Callable[[Connection], Any]


def views(ch: Analytics, side: Connection, now: float) -> list[View]:
    """Every ClickHouse-backed view (``side``: the SQL store the ClickHouse reads join)."""
    week, month, quarter = Period.past(7), Period.past(30), Period.past(DAYS)
    top = crash_analytics.top_guilties(ch, side, week, limit=1)
    gid = int(top[0]["guilty_id"]) if top else 1
    agg = aggregation.parse({
        "axis_x": "measurement_start_day", "axis_y": "probe_cc",
        "since": (datetime.now(UTC) - timedelta(days=180)).strftime("%Y-%m-%d"),
        "until": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
    })
    newest = search.parse({"limit": "100", "probe_cc": "IT"}, 1000)

    def listing(f: RecordFilter) -> tuple[Callable[[], Any], Callable[[Connection], Any]]:
        return (lambda: records_table.records_by_ids(
                    ch, [i for i, _ in records_table.record_sizes(ch, f, 100)]),
                lambda c: sql_records.records_by_ids(
                    c, [i for i, _ in sql_records.record_sizes(c, f, 100)]))

    return [
        View("/api/records, newest 100", *listing(RecordFilter())),
        View("/api/records?classification=…/crash/clr&build=31045", *listing(
            RecordFilter(classification="org.clearlinux/crash/clr", build="31045"))),
        View("/stats, 30 days", lambda: dashboards.stats(ch, month, RollupFilter()),
             lambda c: dashboards.sql_all_stats(c, month, RollupFilter())),
        View("/builds, 30 days",
             lambda: dashboards.records_per_build(ch, month, RollupFilter()),
             lambda c: sql_builds.records_per_build(c, month, RollupFilter())),
        View("/population, weeks of 90 days",
             lambda: dashboards.machines_per_build(ch, quarter, "week"),
             lambda c: sql_population.machines_per_build(c, quarter, "week")),
        View("/crashes, 7 days", lambda: crash_analytics.top_guilties(ch, side, week),
             lambda c: sql_crashes.top_guilties(c, week)),
        View("/crashes, 90 days", lambda: crash_analytics.top_guilties(ch, side, quarter),
             lambda c: sql_crashes.top_guilties(c, quarter)),
        View("/crashes/{top group}, 7 days",
             lambda: crash_analytics.group_detail(ch, side, gid, week, 200, 0),
             lambda c: sql_crashes.group_detail(c, gid, week, 200, 0)),
        View("/crashes/{top group}, 90 days",
             lambda: crash_analytics.group_detail(ch, side, gid, quarter, 200, 0),
             lambda c: sql_crashes.group_detail(c, gid, quarter, 200, 0)),
        View("/crashes/{top group}/backtraces, 7 days",
             lambda: crash_analytics.group_records(ch, side, gid, None, None, week, 50),
             lambda c: crash_analytics.sql_group_records(c, gid, None, None, week, 50)),
        View("/mce, 90 days", lambda: mce_analytics.mce(ch, quarter),
             lambda c: sql_mce.mce_summary(c, quarter)),
        View("/thermal, 5 weeks", lambda: mce_analytics.thermal(ch, Period.past(35)),
             lambda c: sql_mce.thermal_weekly(c, Period.past(35))),
        View("/substrate, message types of 60 minutes",
             lambda: substrate.message_types(ch, now - 3600),
             lambda c: substrate_queries.recent_message_types(c, now - 3600)),
        View("/api/v1/aggregation, 180 days by day x probe_cc",
             lambda: clickhouse.run_aggregation(ch, agg), lambda c: aggregation.run(c, agg)),
        View("/api/v1/measurements?probe_cc=IT, newest 100",
             lambda: clickhouse.run_search(ch, newest), lambda c: search.run(c, newest)),
    ]


Timing = tuple[float, float, float]  # first, median, median CPU (seconds)


def _timed(fn: Callable[[], Any], repeat: int, cpu: Callable[[], float]) -> Timing:
    """(first, median, median CPU) seconds; ``cpu``: the CPU seconds counter to read."""
    walls, cpus = [], []
    for _ in range(repeat + 1):
        w, c = time.perf_counter(), cpu()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(cpu() - c)
    return walls[0], statistics.median(walls[1:]), statistics.median(cpus[1:])


def _same(a: Any, b: Any) -> str:
    """Whether two answers are the same once serialised as the API does (JSON): "yes",
    "no", or the same but for machine counts both stores estimate (above
    ``DOWNLINK_CRASH_EXACT_MACHINES`` crashes: ClickHouse's ``uniq`` and the SQL
    store's sketches are different estimators)."""
    estimates: list[str] = []

    def norm(x: Any, estimated: bool = False) -> Any:
        if isinstance(x, dict):
            estimated = estimated or bool(x.get("machines_estimated"))
            out = {}
            for k, v in x.items():
                if k == "dedup_key":
                    continue
                if estimated and k in ("machines", "machines_total") and isinstance(v, int):
                    estimates.append(k)
                    continue
                out[k] = norm(v, estimated)
            return out
        if isinstance(x, list | tuple):
            return [norm(v, estimated) for v in x]
        return x

    left = json.dumps(norm(a), sort_keys=True, default=str)
    if left != json.dumps(norm(b), sort_keys=True, default=str):
        return "no"
    return "yes, but the machine estimates" if estimates else "yes"


def _cell(t: Timing) -> str:
    first, median, cpu = (x * 1000 for x in t)
    return f"{first:,.0f} / {median:,.0f} ({cpu:,.0f})"


def _faster(ch: float, pg: float) -> str:
    """Which store answered first, and how many times faster (median wall times)."""
    if not ch or not pg:
        return "-"
    if ch <= pg:
        return f"ClickHouse {pg / ch:,.1f}x faster"
    return f"PostgreSQL {ch / pg:,.1f}x faster"


def _disk(ch: Analytics) -> int:
    return int(ch.query(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = 'scale'"
    )[0][0] or 0)


def _generated(ch: Analytics, have: tuple[int, int], want: tuple[int, int], groups: int,
               now: float) -> str:
    took = generate(ch, have, want, groups, now)
    return (f"records {have[0]:,} → {want[0]:,} ({took['records']:.0f} s), their crash rows "
            f"({took[crash_analytics.NAME]:.0f} s), OONI measurements {have[1]:,} → "
            f"{want[1]:,} ({took[clickhouse.TABLE.name]:.0f} s)")


def run(n: int, ooni_rows: int, groups: int, repeat: int, folder: str | None,
        pg_records: int = 0, reserve_gb: float = 10.0) -> str:
    """Generate, time every view on ClickHouse (and, with ``pg_records``, the first
    ``pg_records`` of the records on PostgreSQL as well, at that count on both);
    the Markdown text of the results."""
    now = time.time()
    pg_n = min(pg_records, n)
    pg_ooni = ooni_rows * pg_n // n if n else 0
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="downlink-chscale-", dir=folder) as tmp:
        free = shutil.disk_usage(tmp).free
        ch = connect(f"chdb://{Path(tmp) / 'chdb'}?database=scale")
        side = sql_side(Path(tmp), groups)
        lines: list[str] = []
        common: dict[str, Timing] = {}
        pg_times: dict[str, Timing] = {}
        same: dict[str, str] = {}
        have = (0, 0)
        if pg_n:
            lines.append(f"Generated in chdb: {_generated(ch, have, (pg_n, pg_ooni), groups, now)}"
                         f"; {_disk(ch) / 2**30:.2f} GiB on disk.")
            have = (pg_n, pg_ooni)
            small_disk = _disk(ch)
            with side.connect() as conn:
                found = views(ch, conn, now)
                answers = {}
                for v in found:
                    common[v.name] = _timed(v.ch, repeat, time.process_time)
                    answers[v.name] = v.ch()
                    print(f"ClickHouse at {pg_n:,}: {v.name}: {_cell(common[v.name])}",
                          flush=True)
            loaded = clickhouse_pg.load(ch, pg_n, pg_ooni, side,
                                        clickhouse_pg.folder_of(Path(tmp)))
            try:
                cluster = clickhouse_pg.ClusterCpu(loaded.pg)

                def both() -> float:  # this process and the cluster's
                    return time.process_time() + cluster()

                with loaded.engine.connect() as pg_conn:
                    for v in found:
                        pg_times[v.name] = _timed(partial(v.sql, pg_conn), repeat, both)
                        same[v.name] = _same(answers[v.name], v.sql(pg_conn))
                        print(f"PostgreSQL at {pg_n:,}: {v.name}: {_cell(pg_times[v.name])}"
                              f" (same answer: {same[v.name]})",
                              flush=True)
            finally:
                loaded.stop()
            per_record = loaded.bytes_per_record() + loaded.bytes_per_measurement() * (
                ooni_rows / n)
            ch_per_record = small_disk / pg_n
            room = free - reserve_gb * 2**30
            largest = int(room / (per_record + ch_per_record))
            lines += [
                "",
                f"PostgreSQL loaded with the first {pg_n:,} records and {pg_ooni:,} OONI "
                f"measurements (bench/clickhouse_pg.py): COPY {loaded.copy_s:.0f} s "
                f"({loaded.copy_cpu:.0f} s CPU, this process and the cluster's), rollups "
                f"by the consumers' functions {loaded.rollups_s:.0f} s "
                f"({loaded.rollups_cpu:.0f} s CPU), indexes "
                f"{loaded.indexes_s:.0f} s, OONI with its rollups {loaded.ooni_s:.0f} s "
                f"({loaded.ooni_cpu:.0f} s CPU), VACUUM ANALYZE "
                f"{loaded.vacuum_s:.0f} s; {loaded.database_bytes / 2**30:.1f} GiB: "
                f"{loaded.bytes_per_record():,.0f} bytes a record (with its indexes and "
                f"rollups), {loaded.bytes_per_measurement():,.0f} a measurement, against "
                f"{ch_per_record:,.0f} bytes a record (with its measurement) in chdb. "
                f"With {free / 2**30:.0f} GiB free at the start and {reserve_gb:g} GiB "
                f"kept for other work, the largest count both stores hold at once is "
                f"**{largest:,} records** (with {ooni_rows / n:g} measurement each).",
            ]
        lines.append("")
        lines.append(f"Generated in chdb: {_generated(ch, have, (n, ooni_rows), groups, now)}"
                     f"; {_disk(ch) / 2**30:.2f} GiB on disk.")
        full: dict[str, Timing] = {}
        with side.connect() as conn:
            for v in views(ch, conn, now):
                full[v.name] = _timed(v.ch, repeat, time.process_time)
                print(f"ClickHouse at {n:,}: {v.name}: {_cell(full[v.name])}", flush=True)
        side.dispose()
        ch.close()
    lines += ["", "Each cell: first call / median ms (median CPU ms).", ""]
    if pg_n:
        lines += [
            f"| view | ClickHouse, {pg_n:,} | PostgreSQL, {pg_n:,} | at {pg_n:,} (medians) "
            f"| same answer | ClickHouse, {n:,} |",
            "|---|---|---|---|---|---|",
        ]
        for name, t in full.items():
            lines.append(f"| {name} | {_cell(common[name])} | {_cell(pg_times[name])} | "
                         f"{_faster(common[name][1], pg_times[name][1])} | "
                         f"{same[name]} | {_cell(t)} |")
    else:
        lines += [f"| view | ClickHouse, {n:,} |", "|---|---|"]
        lines += [f"| {name} | {_cell(t)} |" for name, t in full.items()]
    return "\n".join(lines)
