"""Query benchmark: /api/records latency against the number of stored records.

Fills the ``records`` table of a SQLite file and of a PostgreSQL database (fsync=on)
with synthetic Clear Linux records (30 days, 50 classifications, 5000 machines, 40
builds) up to each size in ``--sizes``, and at each size times a set of typical
``/api/records`` requests against ``downlink serve``, sequentially, ``--repeat`` times.

    python bench/queries.py [--sizes 100000,1000000] [--repeat 15]
    python bench/queries.py --sizes 100000,1000000,10000000   # 10M: allow an hour or so
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402

from downlink.settings import CLEAR_LINUX_TID  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

COLUMNS = ("source", "record_version", "classification", "severity", "machine_id",
           "ts_capture", "ts_reception", "arch", "host_type", "build", "kernel_version",
           "payload_version", "system_name", "board_name", "cpu_model", "bios_version",
           "event_id", "external", "tid", "payload")
DAYS = 30

QUERIES = (
    ("newest 100", {"limit": "100"}),
    ("newest 10000 (default limit)", {}),
    ("classification, 100", {"classification": "org.clearlinux/bench/c7", "limit": "100"}),
    ("machine_id, 100", {"machine_id": f"{123:032x}", "limit": "100"}),
    ("build + severity, 100", {"build": "30007", "severity": "4", "limit": "100"}),
    ("last hour, 1000", {"created_in_sec": "3600", "limit": "1000"}),
    ("classification, last day", {"classification": "org.clearlinux/bench/c7",
                                  "created_in_days": "1"}),
)


def synthetic(start: int, stop: int, size: int, now: float) -> Iterator[tuple[Any, ...]]:
    """Rows ``start``..``stop`` of a data set of ``size`` records, newest (and id) last."""
    span = DAYS * 86400.0
    for i in range(start, stop):
        ts = now - span * (1 - i / size)  # arriving at a steady rate over the window
        yield ("clearlinux", 4, f"org.clearlinux/bench/c{i % 50}", 1 + i % 4,
               f"{i % 5000:032x}", ts - 5, ts, "x86_64", "no_sv_file|no_pn_file",
               str(30000 + i % 40), "6.18.44-fc-v657", 1, "clear-linux-os", "board",
               "Intel(R)", "bios", f"{i:032x}", False, CLEAR_LINUX_TID,
               f"payload of record {i} " + "x" * 150)


def fill_sqlite(path: Path, size: int, now: float) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")  # bulk load; the server reopens with FULL
    sql = f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    step = 100_000
    for lo in range(0, size, step):
        conn.executemany(sql, synthetic(lo, min(size, lo + step), size, now))
        conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def fill_postgres(dsn: str, size: int, now: float) -> None:
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY records ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in synthetic(0, size, size, now):
                    copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE records")


def time_queries(url: str, repeat: int) -> dict[str, tuple[float, float, int]]:
    """Per query: median and worst latency (ms) and the number of records returned."""
    out = {}
    with httpx.Client(base_url=url, timeout=300) as client:
        for name, params in QUERIES:
            took = []
            count = 0
            for _ in range(repeat):
                started = time.perf_counter()
                resp = client.get("/api/records", params=params)
                took.append((time.perf_counter() - started) * 1000)
                resp.raise_for_status()
                count = len(resp.json()["records"])
            out[name] = (statistics.median(took), max(took), count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    about = machine()
    now = time.time()
    results: dict[tuple[str, int], dict[str, tuple[float, float, int]]] = {}
    fill_seconds: dict[tuple[str, int], float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="downlink-queries-"))
    pg = TempPostgres(fsync=True).start() if "postgresql" in args.databases else None
    try:
        for db in args.databases.split(","):
            for size in sizes:
                # A fresh database per size, its records spread over the same 30 days.
                if db == "sqlite":
                    path = tmp / f"queries-{size}.db"
                    url = f"sqlite:///{path}"
                else:
                    assert pg is not None
                    url = pg.create_database(f"queries_{size}")
                server = LiveServer(url, log=tmp / "server.log").start()  # creates schema
                try:
                    started = time.perf_counter()
                    if db == "sqlite":
                        fill_sqlite(path, size, now)
                    else:
                        assert pg is not None
                        fill_postgres(f"host=127.0.0.1 port={pg.port} user=postgres "
                                      f"dbname=queries_{size}", size, now)
                    fill_seconds[(db, size)] = time.perf_counter() - started
                    results[(db, size)] = time_queries(server.url, args.repeat)
                    print(f"{db} {size:,}: " + ", ".join(
                        f"{k} {v[0]:.1f} ms" for k, v in results[(db, size)].items()))
                finally:
                    server.stop()
                if db == "sqlite":
                    path.unlink(missing_ok=True)
                else:
                    assert pg is not None
                    pg.drop_database(f"queries_{size}")
    finally:
        if pg is not None:
            pg.stop()
    headers = ["query (records returned at the largest size)"]
    keys = sorted(results, key=lambda k: (k[0], k[1]))
    headers += [f"{db} {size:,} median / max ms" for db, size in keys]
    rows = []
    for name, _ in QUERIES:
        last = results[keys[-1]][name][2]
        rows.append([f"{name} ({last})"] + [
            f"{results[k][name][0]:.1f} / {results[k][name][1]:.1f}" for k in keys])
    result = table(headers, rows)
    print(result)
    body = (
        "## Query latency against record count\n\n"
        f"`python bench/queries.py --sizes {args.sizes} --repeat {args.repeat}` — {about}\n\n"
        f"Synthetic records over {DAYS} days (50 classifications, 5000 machines, 40 builds, "
        "about 200-byte payloads), loaded directly (COPY / executemany), then "
        f"`GET /api/records` timed {args.repeat} times per query, one request at a time, "
        "over HTTP against `downlink serve` (client time: query, JSON encoding and transfer). "
        "Record ids and reception times grow together, as on a real server. "
        "The default request returns 10 000 records, so it is dominated by encoding them. "
        + "Loading took " + ", ".join(f"{db} {size:,}: {s:.0f} s"
                                      for (db, size), s in fill_seconds.items())
        + ".\n\n" + result
    )
    if not args.no_write:
        write_section("queries", body)


if __name__ == "__main__":
    main()
