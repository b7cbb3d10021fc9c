"""ClickHouse (chdb, in-process) against SQLite and PostgreSQL: the OONI aggregation.

Generates ``--rows`` scored fastpath rows (random countries, ASNs, tests, domains and
outcomes over 180 days), loads the same rows into ``ooni_fastpath`` on each SQL store
(migrated schema, its indexes, and the aggregation rollups the fastpath writer keeps,
recounted after the load by ``rollup.rebuild``) and into the ClickHouse table the
shipper fills, then
times the heaviest aggregation the API serves: 180 days by day x probe_cc, through
the same code paths (``aggregation.run`` and its ClickHouse twin). Also times
ClickHouse's insert of the same rows in shipper-sized blocks (rows/s).

Then the shipper: ``--ship`` records stored in SQLite are shipped by the
``analytics_records`` consumer (reading the log in commit order, mapping, inserting
blocks of 10,000, moving its cursor), against ClickHouse's own insert of the same rows
in the same blocks (the floor of any shipper).

    python bench/clickhouse.py [--rows 1000000] [--databases sqlite,postgresql] [--repeat 3]
                               [--ship 200000]

At scale, every ClickHouse-backed view on rows generated inside the engine
(``bench/clickhouse_scale.py``; writes its section of docs/performance.md unless
``--no-write``):

    python bench/clickhouse.py --scale 100000000 [--ooni-rows N] [--groups 2000] [--dir /big/disk]
                               [--pg-records 10000000]

``--pg-records M`` also loads the first M generated records (and that share of the OONI
rows) into PostgreSQL (``bench/clickhouse_pg.py``) and times every view there too,
both stores at M, before chdb grows to N; the section states PostgreSQL's bytes per
record and the largest count the disk holds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select

from downlink.analytics import records as records_table
from downlink.analytics import schema
from downlink.analytics.client import connect
from downlink.analytics.shipper import shipping
from downlink.pipeline.consumers import bind, step
from downlink.settings import Settings
from downlink.sources.base import LogRecord
from downlink.sources.ooni import aggregation, clickhouse, rollup
from downlink.sources.ooni.tables import fastpath
from downlink.store import cursors, migrate
from downlink.store.engine import _normalise
from downlink.store.tables import records
from downlink.testing.postgres import TempPostgres

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clickhouse_scale  # noqa: E402
from common import machine, write_section  # noqa: E402

CCS = ["IT", "DE", "IR", "CN", "RU", "US", "BR", "IN", "TR", "EG", "ID", "MX"]
TESTS = ["web_connectivity", "tor", "signal", "whatsapp", "telegram", "dnscheck"]


def rows(n: int, now: float) -> list[dict[str, Any]]:
    rng = random.Random(14)
    out = []
    for i in range(n):
        # Whole seconds, as OONI's start times are ("YYYY-MM-DD HH:MM:SS"): PostgreSQL
        # rounds a double cast to bigint where SQLite and ClickHouse truncate.
        t = float(int(now - rng.random() * 180 * 86400))
        anomaly = rng.random() < 0.1
        out.append({
            "measurement_uid": f"20250101{i:012d}_{rng.getrandbits(40):x}",
            "report_id": f"r{i // 50}", "input": f"https://site{rng.randint(0, 999)}.example/",
            "probe_cc": rng.choice(CCS), "probe_asn": rng.randint(1, 400),
            "test_name": rng.choice(TESTS), "test_start_time": t, "measurement_start_time": t,
            "filename": "", "scores": "{}", "platform": "linux", "anomaly": anomaly,
            "confirmed": anomaly and rng.random() < 0.2, "msm_failure": rng.random() < 0.05,
            "domain": f"site{rng.randint(0, 999)}.example", "software_name": "ooniprobe",
            "software_version": "3.20", "control_failure": "", "blocking_general": 0.0,
            "is_ssl_expected": 0, "page_len": 0, "page_len_ratio": 0.0, "server_cc": "",
            "server_asn": 0, "server_as_name": "", "update_time": now, "test_version": "0.4",
            "architecture": "amd64", "engine_name": "ooniprobe-engine",
            "engine_version": "3.20", "test_runtime": 1.0, "blocking_type": "",
            "test_helper_address": "", "test_helper_type": "", "ooni_run_link_id": None,
            "is_verified": "1", "ts_reception": t,
        })
    return out


def ship(count: int, tmp: Path) -> None:
    """Shipper throughput against a bare insert of the same rows."""
    url = f"sqlite:///{tmp / 'ship.db'}"
    settings = Settings(database_url=url, analytics_url=f"chdb://{tmp / 'chdb'}?database=ship")
    engine = create_engine(_normalise(url))
    migrate.upgrade(engine, sources=settings.registry)
    rng = random.Random(7)
    base = {c.name: "" for c in records.columns
            if c.name not in ("id", "attrs", "dedup_key", "guilty_id", "sender_flagged")}
    with engine.begin() as conn:
        for at in range(0, count, 5000):
            block = []
            for _ in range(min(5000, count - at)):
                block.append({**base, "source": "clearlinux", "record_version": 4,
                              "classification": "org.clearlinux/crash/clr",
                              "severity": rng.randint(1, 4), "ts_capture": time.time(),
                              "ts_reception": time.time(), "payload_version": 1,
                              "external": False, "machine_id": f"{rng.getrandbits(128):032x}",
                              "build": str(rng.choice((100, 200))), "payload": "x" * 200})
            conn.execute(insert(records), block)
    found = shipping(settings)
    assert found is not None
    found.ensure_schema()
    [bound] = [b for b in bind(settings.registry, [("analytics", c) for c in found.consumers()])
               if b.name == "analytics_records"]
    with engine.begin() as conn:
        cursors.ensure(conn, bound.name, bound.consumer.follows)
    start = time.perf_counter()
    shipped = 0
    while True:
        with engine.begin() as conn:
            n = step(conn, bound)
        if not n:
            break
        shipped += n
    shipper = time.perf_counter() - start
    with engine.connect() as conn:
        rows_ = [dict(r) for r in conn.execute(select(records)).mappings()]
    mapped = records_table.TABLE.rows(None, [  # type: ignore[arg-type]
        LogRecord(r["id"], r["ts_reception"], r) for r in rows_])
    names = [c for c, _ in records_table.COLUMNS]
    ch = found.ch
    ch.command(f"CREATE TABLE {ch.table('bare')} AS {ch.table('records')}")
    start = time.perf_counter()
    for at in range(0, len(mapped), records_table.TABLE.batch_max):
        ch.insert("bare", mapped[at : at + records_table.TABLE.batch_max], names)
    bare = time.perf_counter() - start
    engine.dispose()
    print(f"shipper    {shipped / shipper:9,.0f} records/s  x{shipper / bare:6.2f} "
          f"of the bare insert ({len(mapped) / bare:,.0f} rows/s), {shipped} records")


def timed(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ship", type=int, default=200_000)
    ap.add_argument("--scale", type=int, default=0,
                    help="time every ClickHouse-backed view over this many records "
                         "generated inside the engine (instead of the comparison above)")
    ap.add_argument("--ooni-rows", type=int, default=None,
                    help="OONI measurements generated with --scale (default: as many)")
    ap.add_argument("--groups", type=int, default=2000, help="crash groups with --scale")
    ap.add_argument("--pg-records", type=int, default=0,
                    help="with --scale: also load the first this many records (and as "
                         "large a share of the OONI rows) into PostgreSQL and time the "
                         "same views there, on both stores at that count")
    ap.add_argument("--reserve-gb", type=float, default=10.0,
                    help="disk kept free for other work when stating the largest count")
    ap.add_argument("--dir", default=None, help="where the --scale data goes (a big disk)")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    args = ap.parse_args()
    if args.scale:
        scale(args)
        return
    now = time.time()
    data = rows(args.rows, now)
    agg = aggregation.parse({
        "axis_x": "measurement_start_day", "axis_y": "probe_cc",
        "since": (datetime.now(UTC) - timedelta(days=180)).strftime("%Y-%m-%d"),
        "until": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
    })
    print(f"{args.rows} rows; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results: dict[str, float] = {}
    answers = {}
    with tempfile.TemporaryDirectory() as tmp:
        ch = connect(f"chdb://{Path(tmp) / 'chdb'}")
        schema.apply(ch, [schema.Planned(clickhouse.TABLE, None)])
        names = [name for name, _ in clickhouse.COLUMNS]
        start = time.perf_counter()
        for at in range(0, len(data), clickhouse.TABLE.batch_max):
            block = data[at : at + clickhouse.TABLE.batch_max]
            ch.insert(clickhouse.TABLE.name, [[r[c] for c in names] for r in block], names)
        load = time.perf_counter() - start
        print(f"clickhouse insert: {args.rows / load:,.0f} rows/s in blocks of "
              f"{clickhouse.TABLE.batch_max}")
        results["clickhouse"] = timed(lambda: clickhouse.run_aggregation(ch, agg), args.repeat)
        answers["clickhouse"] = clickhouse.run_aggregation(ch, agg)
        pg = None
        for kind in args.databases.split(","):
            if kind == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            else:
                pg = TempPostgres().start()
                url = pg.create_database("bench")
            engine = create_engine(_normalise(url))
            migrate.upgrade(engine, sources=Settings(database_url=url).registry)
            with engine.begin() as conn:
                for at in range(0, len(data), 5000):
                    conn.execute(insert(fastpath), data[at : at + 5000])
                rollup.rebuild(conn)  # what the page reads: the fastpath writer keeps them
                if kind == "postgresql":
                    conn.exec_driver_sql("ANALYZE ooni_fastpath")
                else:
                    conn.exec_driver_sql("ANALYZE")

            def run_sql(engine: Any = engine) -> list[dict[str, Any]]:
                with engine.connect() as conn:
                    return aggregation.run(conn, agg)

            results[kind] = timed(run_sql, args.repeat)
            answers[kind] = run_sql()
            engine.dispose()
        if pg is not None:
            pg.stop()
        if args.ship:  # in the same chdb folder: one engine per process
            ship(args.ship, Path(tmp))
    base = results["clickhouse"]
    for kind, seconds in results.items():
        same = "same answer" if answers[kind] == answers["clickhouse"] else "DIFFERENT answer"
        print(f"{kind:11s} {seconds * 1000:9.1f} ms  x{seconds / base:6.1f}  ({same})")


def scale(args: argparse.Namespace) -> None:
    """``--scale``: every ClickHouse-backed view over generated rows."""
    about = machine()
    ooni_rows = args.scale if args.ooni_rows is None else args.ooni_rows
    body = clickhouse_scale.run(args.scale, ooni_rows, args.groups, args.repeat, args.dir,
                                args.pg_records, args.reserve_gb)
    print(body)
    if args.no_write:
        return
    write_section("clickhouse-scale", "\n".join([
        f"## ClickHouse at scale: every ClickHouse-backed view, {args.scale:,} records"
        + (f", against PostgreSQL at {args.pg_records:,}" if args.pg_records else ""),
        "",
        f"`python bench/clickhouse.py {' '.join(sys.argv[1:])}`; {about}",
        "Rows generated inside chdb (`INSERT … SELECT … FROM numbers(N)`) in the shape the "
        "shippers write; each view timed through the function its page or API calls, "
        f"first call then the median of {args.repeat}. CPU time is this process's (chdb "
        "runs in it) and, on PostgreSQL, that of the cluster's processes as well. "
        "PostgreSQL answers from what its pages read: the rollups kept by the Clear "
        "Linux consumers' own functions, `records` and `ooni_fastpath` with their "
        "indexes (bench/clickhouse_pg.py).",
        "",
        body,
    ]))


if __name__ == "__main__":
    main()
