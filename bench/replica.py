"""Ingest and dashboards with a read replica and with monthly partitions, against neither.

    python bench/replica.py [--records 100000] [--seconds 10] [--connections 32]

One PostgreSQL primary (fsync=on) with a streaming replica made by ``pg_basebackup -R``.
The same generated records (``bench/dashboards.py``'s generator and processors) are
loaded twice: into a plain database and into one whose ``records`` was partitioned by
month before the load (so the 60 days of records spread over three monthly partitions).
Each database is copied (``CREATE DATABASE … TEMPLATE``) for each configuration:

* **plain**: ``DATABASE_URL`` only, unpartitioned (the baseline);
* **replica**: ``DATABASE_READ_URL`` names the replica;
* **partitioned**: partitioned ``records``, no replica;
* **both**: partitioned, reads on the replica.

The configurations run interleaved, ``--rounds`` times, keeping each figure's best.
For each, a one-worker ``downlink serve``: single-record posts with wrk (records/s,
p99), then the dashboards (each page timed five times after one warm-up: median), then
the dashboards again while wrk posts (the mixed run: the pages' median and the ingest
rate beside them). Ratios are against *plain* in the same run. The section
``replica`` of docs/performance.md is replaced.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from dashboards import load  # noqa: E402
from load import LoadResult, need_wrk, run_wrk  # noqa: E402

from downlink.settings import Settings  # noqa: E402
from downlink.store import partitions  # noqa: E402
from downlink.store.database import Store  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

PAGES = ("/stats", "/builds", "/crashes", "/population", "/mce", "/records",
         "/api/records?limit=100", "/crashes.json", "/stats.json")
ROUNDS = 5


@dataclass
class Figures:
    ingest: LoadResult
    pages_ms: float
    mixed_pages_ms: float
    mixed_ingest: LoadResult


def _sql(pg: TempPostgres, db: str, statement: str) -> None:
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname={db}",
                         autocommit=True) as conn:
        conn.execute(statement)


def _pages(url: str, rounds: int = ROUNDS) -> float:
    """Median over pages of each page's median time (ms)."""
    per_page: list[float] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for page in PAGES:
            assert client.get(page).status_code == 200, page
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                r = client.get(page)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, page
            per_page.append(statistics.median(times))
    return statistics.median(per_page)


def _wait_replica(primary: TempPostgres, replica: TempPostgres) -> None:
    with psycopg.connect(f"host=127.0.0.1 port={primary.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert target is not None
    deadline = time.monotonic() + 300
    with psycopg.connect(f"host=127.0.0.1 port={replica.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                               (target[0],)).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
    raise RuntimeError("the replica did not catch up")


def run_config(primary: TempPostgres, replica: TempPostgres, template: str, name: str,
               read_replica: bool, args: argparse.Namespace, log: Path) -> Figures:
    _sql(primary, "postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    _wait_replica(primary, replica)
    env = {"DATABASE_READ_URL": replica.url(name)} if read_replica else {}
    server = LiveServer(primary.url(name), env=env, log=log).start()
    try:
        ingest = run_wrk(server.url + "/v2/collector", args.seconds, args.connections)
        pages = _pages(server.url)
        mixed: list[LoadResult] = []
        loader = threading.Thread(target=lambda: mixed.append(run_wrk(
            server.url + "/v2/collector", args.seconds, args.connections)))
        loader.start()
        time.sleep(1.0)
        mixed_pages = _pages(server.url, rounds=3)
        loader.join()
    finally:
        server.stop()
    return Figures(ingest, pages, mixed_pages, mixed[0])


def _best(figures: list[Figures]) -> Figures:
    """The best of the rounds, figure by figure (the machine is shared: noise only slows)."""
    return Figures(
        ingest=max((f.ingest for f in figures), key=lambda r: r.per_second),
        pages_ms=min(f.pages_ms for f in figures),
        mixed_pages_ms=min(f.mixed_pages_ms for f in figures),
        mixed_ingest=max((f.mixed_ingest for f in figures), key=lambda r: r.per_second),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of every configuration, interleaved; the best is kept")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    primary = TempPostgres(fsync=True).start_primary()
    replica = None
    try:
        now = time.time()
        plain = primary.create_database("tpl_plain")
        print(f"loading {args.records:,} records (plain)", flush=True)
        load(plain, args.records, seed=7, now=now)
        parted = primary.create_database("tpl_parted")
        store = Store(Settings(database_url=parted))
        store.migrate()
        first = partitions.month_start(now - 70 * 86400.0)
        # The server's own layout: the months since the boundary, then this month and
        # partitions.AHEAD more, as a server makes them on start (ensure_ahead). Every
        # partition adds planning to the statements that cannot be pruned
        # (docs/performance.md), so no more than the server would have.
        months, start = 0, first
        while (start := partitions.next_month(start)) <= partitions.month_start(now):
            months += 1
        partitions.convert(store.write_engine, boundary=first, ahead=months)
        with store.write_engine.begin() as conn:
            partitions.ensure_ahead(conn, now)
        store.close()
        print(f"loading {args.records:,} records (partitioned)", flush=True)
        load(parted, args.records, seed=7, now=now)
        replica = primary.start_replica()
        log = Path(primary.root) / "server.log"
        runs: dict[str, list[Figures]] = {}
        for round_ in range(args.rounds):
            for name, template, use_replica in (
                ("plain", "tpl_plain", False), ("replica", "tpl_plain", True),
                ("partitioned", "tpl_parted", False), ("both", "tpl_parted", True),
            ):
                print(f"{name} (round {round_ + 1}) …", flush=True)
                runs.setdefault(name, []).append(run_config(
                    primary, replica, template, f"run_{name}_{round_}", use_replica, args, log))
        results = {name: _best(figures) for name, figures in runs.items()}
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()
    base = results["plain"]
    rows = []
    for name, f in results.items():
        rows.append([
            name, round(f.ingest.per_second), f.ingest.p99_ms,
            f"{f.ingest.per_second / base.ingest.per_second:.2f}",
            f"{f.pages_ms:.1f}", f"{f.pages_ms / base.pages_ms:.2f}",
            f"{f.mixed_pages_ms:.1f}", f"{f.mixed_pages_ms / base.mixed_pages_ms:.2f}",
            round(f.mixed_ingest.per_second),
            f.ingest.status_errors + f.ingest.socket_errors
            + f.mixed_ingest.status_errors + f.mixed_ingest.socket_errors,
        ])
    result = table(["configuration", "records/s", "p99 ms", "ratio (higher is better)",
                    "pages ms", "ratio (lower is better)", "pages ms under ingest",
                    "ratio (lower is better)", "records/s beside pages", "errors"], rows)
    print(result)
    body = (
        "## Read replica and monthly partitions (issue 15)\n\n"
        f"`python bench/replica.py --records {args.records} --seconds {args.seconds:g} "
        f"--connections {args.connections} --rounds {args.rounds}` — {about}\n\n"
        f"{args.records:,} generated records (60 days) per database; one `downlink serve` "
        "worker on a PostgreSQL primary (fsync=on) with a streaming replica on the same "
        "machine. *records/s*: wrk single-record posts; *pages ms*: the median over "
        f"{len(PAGES)} views ({', '.join(PAGES)}) of each view's median of {ROUNDS}; "
        "*under ingest*: the same while wrk posts, with the ingest rate it kept beside "
        f"them. The configurations run interleaved, {args.rounds} rounds; each figure is "
        "the best of its rounds. Ratios against *plain* (1.00; ingest: higher is better, "
        "pages: lower is better). Replica and primary share the same two cores here, so "
        "a replica cannot add capacity in this run: what it shows is the cost of the "
        "routing and of the replay next to the primary.\n\n" + result
    )
    if not args.no_write:
        write_section("replica", body)


if __name__ == "__main__":
    main()
