"""Where PostgreSQL spends its time per record on a partitioned ``records``: per statement.

    python bench/partition_statements.py [--records 20000] [--seconds 8] [--rounds 2]

One PostgreSQL (fsync=on) with ``pg_stat_statements`` (``track_planning`` on). The same
generated records (``bench/dashboards.py``'s loader) go into a plain database and into
one whose ``records`` was partitioned by month before the load, with the server's own
layout (``bench/replica.py``'s: the old table, the months since, this month and
``partitions.AHEAD`` more). For each database, in turn, ``--rounds`` times: a one-worker
``downlink serve``, a 2 s wrk warm-up, the statistics reset, ``--seconds`` of
single-record posts with wrk (32 connections), the consumers caught up, then each
statement's planning and execution time per stored record, summed over the rounds.

This is the profile behind the partitioned rows of the ``replica`` section: which
statements cost the partitioned table its extra backend time. Times are the backends'
wall-clock time in planning and executing, which on a loaded 2-core machine includes
waiting for a core; compare the two databases, not the absolute values. The section
``partition-statements`` of docs/performance.md is replaced.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from dashboards import load  # noqa: E402
from load import need_wrk, run_wrk  # noqa: E402
from replica import partition_as_a_server  # noqa: E402

from downlink.testing.consumers import wait_caught_up  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

DATABASES = ("plain", "partitioned")
TOP = 8


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_statements(pg: TempPostgres) -> None:
    """Restart ``pg`` with pg_stat_statements loaded and planning timed."""
    with psycopg.connect(_libpq(pg.url("postgres")), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    pg.run_as_server_user(str(pg.bindir / "pg_ctl"), "-D", str(pg.datadir), "-o",
                          pg._opts + " -c pg_stat_statements.track_planning=on",
                          "-l", str(pg.root / "log"), "-w", "restart")


_KNOWN = (  # (pattern, name) of the statements the record log runs per batch
    (r"^WITH p AS", "retransmission lookup (store/inserts.py)"),
    (r"^INSERT INTO records_keys", "key claim (store/partition_keys.py)"),
    (r"^SELECT nextval", "ids for COPY (store/pg_insert.py)"),
    (r"^COPY records", "COPY of the batch (store/pg_insert.py)"),
    (r"^SELECT id, source.* FROM records WHERE dedup_key",
     "retransmissions' stored rows (store/partition_keys.py)"),
    (r"^SELECT records\.id, records\.source.* FROM records WHERE \(COALESCE\(txid",
     "consumer's read after its cursor (follow.read_after)"),
    (r"^SELECT records\.id FROM records WHERE \(COALESCE\(txid",
     "consumer's idle check (follow.has_after)"),
    (r"^SELECT records\.ts_reception FROM records WHERE \(COALESCE\(txid",
     "lag: first waiting (follow.lag)"),
    (r"^SELECT count\(\*\) AS count_1 FROM \(SELECT records\.id",
     "lag: rows waiting (follow.lag)"),
)


def _shape(query: str) -> str:
    """A statement's name: a known one's, else its verb and the first table it names."""
    flat = re.sub(r"\s+", " ", query).strip()
    for pattern, name in _KNOWN:
        if re.search(pattern, flat):
            return name
    found = re.search(r"\b(FROM|INTO|UPDATE) +([a-z_]+)", flat)
    head = flat.split(" ", 1)[0].upper()
    if found is None:
        return flat[:60]
    return f"{head} {found[2]}" if head == found[1] else f"{head} … {found[1]} {found[2]}"


def one_round(pg: TempPostgres, db: str, seconds: float) -> tuple[int, list[tuple]]:
    """Post for ``seconds``; the records stored and the statements' figures."""
    server = LiveServer(pg.url(db)).start()
    try:
        run_wrk(server.url + "/v2/collector", 2, 16)
        wait_caught_up(server.url, timeout=300)
        with psycopg.connect(_libpq(pg.url(db)), autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
        result = run_wrk(server.url + "/v2/collector", seconds, 32)
        wait_caught_up(server.url, timeout=300)
        with psycopg.connect(_libpq(pg.url(db)), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT query, calls, total_plan_time, total_exec_time "
                "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "WHERE d.datname = current_database()"
            ).fetchall()
    finally:
        server.stop()
    return result.requests, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    about = machine()
    pg = TempPostgres(fsync=True).start()
    stored: dict[str, int] = defaultdict(int)
    # (database, statement shape) -> [calls, plan ms, exec ms]
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    try:
        _with_statements(pg)
        now = time.time()
        urls = {"plain": pg.create_database("plain"),
                "partitioned": pg.create_database("partitioned")}
        partition_as_a_server(urls["partitioned"], now)
        for db in DATABASES:
            print(f"loading {args.records:,} records ({db})", flush=True)
            load(urls[db], args.records, seed=7, now=now)
            with psycopg.connect(_libpq(urls[db]), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for round_ in range(args.rounds):
            order = DATABASES if round_ % 2 == 0 else DATABASES[::-1]
            for db in order:
                n, rows = one_round(pg, db, args.seconds)
                stored[db] += n
                for query, calls, plan_ms, exec_ms in rows:
                    cell = sums[(db, _shape(str(query)))]
                    cell[0] += calls
                    cell[1] += plan_ms
                    cell[2] += exec_ms
                print(f"{db} round {round_ + 1}: {n:,} records", flush=True)
    finally:
        pg.stop()

    def per_record(db: str, cell: list[float], i: int) -> float:
        return cell[i] * 1e3 / max(1, stored[db])

    totals = {(db, i): sum(per_record(db, c, i) for (d, _), c in sums.items() if d == db)
              for db in DATABASES for i in (1, 2)}
    shapes = sorted({shape for (_, shape) in sums},
                    key=lambda s: -max(per_record(db, sums[(db, s)], 1)
                                       + per_record(db, sums[(db, s)], 2)
                                       for db in DATABASES))[:TOP]
    rows = []
    for shape in shapes:
        cells: list[object] = [shape]
        for db in DATABASES:
            cell = sums.get((db, shape), [0.0, 0.0, 0.0])
            calls = cell[0] / max(1, stored[db])
            cells += [f"{calls:.3f}", f"{per_record(db, cell, 1):.1f}",
                      f"{per_record(db, cell, 2):.1f}"]
        rows.append(cells)
    every: list[object] = ["**every statement**"]
    for db in DATABASES:
        every += ["", f"**{totals[(db, 1)]:.1f}**", f"**{totals[(db, 2)]:.1f}**"]
    rows.append(every)
    out = table(["statement", "plain: calls per record", "plain: plan us/record",
                 "plain: execution us/record", "partitioned: calls per record",
                 "partitioned: plan us/record", "partitioned: execution us/record"], rows)
    print(out)
    body = (
        "## Partitioned `records`: PostgreSQL's time per statement "
        "(`python bench/partition_statements.py`)\n\n"
        f"`python bench/partition_statements.py --records {args.records} --seconds "
        f"{args.seconds:g} --rounds {args.rounds}` — {about}\n\n"
        f"{args.records:,} generated records per database, then single-record posts "
        f"with wrk (32 connections, {args.seconds:g} s a round, {args.rounds} rounds "
        "alternating the order) to a one-worker server; `pg_stat_statements` with "
        "planning timed, per stored record "
        f"({stored['plain']:,} plain, {stored['partitioned']:,} partitioned). The "
        "partitioned database has the server's own layout: the old table, the months "
        "since, this month and two ahead (seven partitions, thirteen indexes each). "
        f"The {TOP} statements costing most:\n\n" + out
    )
    if not args.no_write:
        write_section("partition-statements", body)


if __name__ == "__main__":
    main()
