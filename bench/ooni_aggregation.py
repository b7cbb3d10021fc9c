"""OONI benchmark: ``GET /api/v1/aggregation`` over 30 days at 10M measurements.

Fast-loads ``--rows`` (default 10,000,000) fastpath rows spread over 30 days straight
into ``ooni_fastpath`` with one ``INSERT … SELECT`` (a generated series; skewed like
real data: 50 countries, the first ones far more common, 20 networks each, 70 %
web_connectivity over 1,000 domains, 30 % anomalies with a blocking type, some
confirmed and failed), counts the rollups from them (``rollup.rebuild``, what the
fastpath writer keeps up to date row by row), then times the MAT's kinds of request
over the whole 30 days against ``downlink serve`` on SQLite and PostgreSQL. Each
request runs ``--repeat`` times after one warm-up; the median is reported.

The baseline in the same run is the same first request answered by grouping the
fastpath rows (``GROUP BY`` over the 30 days, no rollup): what every request cost
before the rollups.

    python bench/ooni_aggregation.py [--rows 10000000] [--databases sqlite,postgresql]
                                     [--repeat 5] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402

from downlink.settings import Settings  # noqa: E402
from downlink.sources.ooni import aggregation, rollup  # noqa: E402
from downlink.store import migrate  # noqa: E402
from downlink.store.engine import make_engine  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

T0 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
DAYS = 30
SINCE, UNTIL = "2026-10-01", "2026-10-31"
CCS = (
    "IR RU CN IT DE US IN BR ID TR MX FR GB UA KZ EG PK VN TH MY PH NG KE ZA AR CO VE "
    "CU BY MM SA AE JO LB IQ SY ET UG TZ RW ES NL PL SE NO FI DK AT CH BE"
).split()
TESTS = (
    "web_connectivity", "telegram", "whatsapp", "signal", "facebook_messenger", "tor",
    "vanilla_tor", "torsf", "dnscheck", "stunreachability", "http_header_field_manipulation",
    "http_invalid_request_line", "psiphon", "riseupvpn",
)
BLOCKING = ("dns", "http-failure", "http-diff", "tcp_ip")

REQUESTS = [
    ("by day", {"axis_x": "measurement_start_day"}),
    ("by day and country", {"axis_x": "measurement_start_day", "axis_y": "probe_cc"}),
    ("by country and test", {"axis_x": "probe_cc", "axis_y": "test_name"}),
    ("one country by day and network", {"axis_x": "measurement_start_day",
                                        "axis_y": "probe_asn", "probe_cc": "IT"}),
    ("one country's web_connectivity by domain", {"axis_x": "domain", "probe_cc": "IR",
                                                   "test_name": "web_connectivity"}),
    ("one domain by day and country", {"axis_x": "measurement_start_day",
                                       "axis_y": "probe_cc", "domain": "d7.example"}),
    ("one network by day and blocking type", {"axis_x": "measurement_start_day",
                                              "axis_y": "blocking_type",
                                              "probe_asn": "AS300"}),
    ("one URL by day", {"axis_x": "measurement_start_day",
                        "input": "https://d3.example/"}),
    ("last 7 days by hour, one test", {"axis_x": "measurement_start_day",
                                       "time_grain": "hour", "test_name": "telegram",
                                       "since": "2026-10-24T00:00:00",
                                       "until": "2026-10-31T00:00:00"}),
    ("unaligned range, by day and country", {"axis_x": "measurement_start_day",
                                             "axis_y": "probe_cc",
                                             "since": "2026-10-01T05:30:00",
                                             "until": "2026-10-30T17:45:00"}),
]


def _case(expr: str, values: tuple[str, ...] | list[str]) -> str:
    whens = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(values))
    return f"(CASE {expr} {whens} END)"


def load_sql(n: int, pg: bool) -> str:
    """One INSERT … SELECT generating ``n`` fastpath rows from a series of integers."""
    series = (
        f"(SELECT i FROM generate_series(CAST(0 AS BIGINT), {n - 1}) AS i) AS s" if pg else
        f"(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1}) "
        "SELECT i FROM s) AS s"
    )
    h = "((i * 2654435761) % 1000003)"
    cc = f"(({h} % 1000) * ({h} % 1000) / 20000)"  # 0..49, skewed to the first
    test = f"(CASE WHEN {h} % 10 < 7 THEN 0 ELSE 1 + (i % 13) END)"
    dom = "(((i * 40503) % 1000) * ((i * 40503) % 1000) / 1000)"  # 0..999, skewed
    anomaly = "((i * 7919) % 100 < 30)"
    confirmed = "((i * 7919) % 100 < 3)"
    failure = "((i * 104729) % 100 < 8)"
    t = f"({T0} + ((i * 97) % {DAYS * 86400}) + (i % 1000) / 1000.0)"
    domain = f"(CASE WHEN {test} = 0 THEN 'd' || {dom} || '.example' ELSE '' END)"
    cast_text = "CAST({} AS TEXT)"
    return f"""
INSERT INTO ooni_fastpath (
  measurement_uid, report_id, input, probe_cc, probe_asn, test_name, test_start_time,
  measurement_start_time, filename, scores, platform, anomaly, confirmed, msm_failure,
  domain, software_name, software_version, control_failure, blocking_general,
  is_ssl_expected, page_len, page_len_ratio, server_cc, server_asn, server_as_name,
  update_time, test_version, architecture, engine_name, engine_version, test_runtime,
  blocking_type, test_helper_address, test_helper_type, ooni_run_link_id, is_verified,
  ts_reception)
SELECT
  'b' || {cast_text.format('i')}, 'r' || {cast_text.format('i / 50')},
  CASE WHEN {test} = 0 THEN 'https://' || {domain} || '/' ELSE '' END,
  {_case(cc, CCS)}, {cc} * 20 + (i % 20) + 1, {_case(test, TESTS)}, {t}, {t}, '', '{{}}',
  'android', {anomaly}, {confirmed}, {failure}, {domain}, 'ooniprobe-android', '3.8.0', '',
  0.0, 0, 0, 0.0, '', 0, '', {t}, '0.4.3', 'arm64', 'ooniprobe-engine', '3.20.0', 1.0,
  CASE WHEN {anomaly} THEN {_case('(i % 4)', BLOCKING)} ELSE '' END, '', '', NULL, 'u',
  {t} + 60
FROM {series}
"""


def fast_load(engine: Engine, n: int) -> tuple[float, float]:
    """Load the rows, then count the rollups; seconds of each."""
    pg = engine.dialect.name == "postgresql"
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(load_sql(n, pg)))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        rollup.rebuild(conn)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return load_s, time.perf_counter() - t0


def timed(url: str, params: dict[str, str], repeat: int) -> tuple[float, int]:
    """Median seconds of ``repeat`` answers (after a warm-up) and the groups answered."""
    q = {"since": SINCE, "until": UNTIL, **params}
    with httpx.Client(base_url=url, timeout=600) as client:
        first = client.get("/api/v1/aggregation", params=q)
        first.raise_for_status()
        groups = first.json()["result"]
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.get("/api/v1/aggregation", params=q).raise_for_status()
            times.append(time.perf_counter() - t0)
    return statistics.median(times), len(groups) if isinstance(groups, list) else 1


def naive(engine: Engine, params: dict[str, str]) -> float:
    """The request answered by grouping the fastpath rows: the same run's baseline."""
    agg = aggregation.parse({"since": SINCE, "until": UNTIL, **params})
    saved = rollup.LEVELS
    rollup.LEVELS = ()  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        with engine.connect() as conn:
            aggregation.run(conn, agg)
        return time.perf_counter() - t0
    finally:
        rollup.LEVELS = saved  # type: ignore[assignment]


def bench_database(url: str, n: int, repeat: int, tmp: Path) -> tuple[list[list[object]], str]:
    settings = Settings(database_url=url)
    engine = make_engine(settings, writer=True)
    migrate.upgrade(engine, sources=settings.registry)
    load_s, rollup_s = fast_load(engine, n)
    print(f"loaded {n} rows in {load_s:.0f} s, rollups in {rollup_s:.0f} s")
    rows: list[list[object]] = []
    server = LiveServer(
        url, log=tmp / "server.log",
        env={"DOWNLINK_OONI_QUOTA_HOUR": "0", "DOWNLINK_OONI_QUOTA_DAY": "0",
             "DOWNLINK_OONI_QUOTA_WEEK": "0"},
    ).start(timeout=120)
    try:
        for label, params in REQUESTS:
            load = os.getloadavg()[0]
            median, groups = timed(server.url, params, repeat)
            rows.append([label, groups, round(median * 1000, 1), f"{load:.1f}"])
            print(table(["request (30 days)", "groups", "median ms", "load avg"], rows[-1:]))
    finally:
        server.stop()
    load = os.getloadavg()[0]
    base = naive(engine, REQUESTS[0][1])
    engine.dispose()
    first = float(str(rows[0][2]))
    note = (
        f"Loaded in {load_s:.0f} s, rollups counted in {rollup_s:.0f} s. Baseline: "
        f"*{REQUESTS[0][0]}* by grouping the fastpath rows took {base * 1000:,.0f} ms "
        f"(load average {load:.1f}); from the rollups {first:,.1f} ms, "
        f"{base * 1000 / first:,.0f} times faster."
    )
    print(note)
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    about = machine()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-ooni-agg-"))
    sections = []
    pg = None
    try:
        for db in args.databases.split(","):
            if db == "sqlite":
                url = f"sqlite:///{tmp / 'agg.db'}"
            else:
                pg = TempPostgres(fsync=True).start()
                url = pg.create_database("ooni_agg")
            rows, note = bench_database(url, args.rows, args.repeat, tmp)
            sections.append(
                f"**{db}** ({args.rows:,} rows). {note}\n\n"
                + table(["request (30 days)", "groups", "median ms", "load avg"], rows)
            )
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    body = (
        "## OONI: aggregation API at 10M measurements\n\n"
        f"`python bench/ooni_aggregation.py --rows {args.rows} --databases {args.databases} "
        f"--repeat {args.repeat}` — {about}\n\n"
        f"{args.rows:,} fastpath rows over {DAYS} days (50 countries, skewed; 1,000 networks; "
        "70 % web_connectivity over 1,000 domains; 30 % anomalies), fast-loaded with one "
        "`INSERT … SELECT`, rollups counted from them. Each request is "
        "`GET /api/v1/aggregation` over the 30 days (unless it says otherwise) against "
        f"`downlink serve`, median of {args.repeat} after a warm-up. Requests whose axes and "
        "filters a rollup has read it (whole days or hours) plus the fastpath rows of the "
        "partial hours at the ends; `input` (and `category_code`) filters read the rows "
        "through the `(input, measurement_start_time)` index.\n\n"
        + "\n\n".join(sections)
    )
    print(body)
    if not args.no_write:
        write_section("ooni-aggregation", body)


if __name__ == "__main__":
    main()
