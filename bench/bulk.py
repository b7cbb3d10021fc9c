"""Bulk ingest benchmark: POST /api/v1/records/bulk against PostgreSQL COPY.

In one run, on one throwaway PostgreSQL cluster (fsync=on): ``COPY`` of N validated
records into the empty ``records`` table, then (after TRUNCATE) the same N records
posted as NDJSON to ``downlink serve``, in requests of ``--batch`` records from
``--clients`` concurrent clients. Also the bulk endpoint on SQLite for reference.

A 201 means the records are committed; their derived data (crash grouping, rollups)
follows from the consumers. The last column is the rate counted until the consumers
had caught up too.

Both with the consumers in every server worker (``in-process``) and with
``DOWNLINK_RUN_CONSUMERS=off`` and one ``downlink consume`` process beside the server
(``apart``); the consumers' lag is sampled as in ``ingest.py`` (``lag.py``).

    python bench/bulk.py [--records 100000] [--batch 5000] [--clients 2]
                         [--workers 1,2] [--layouts in-process,apart]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from lag import LagSampler  # noqa: E402

from downlink.sources.clearlinux.rollups import ROLLUP_TABLES  # noqa: E402
from downlink.sources.clearlinux.wire import validate  # noqa: E402
from downlink.store.inserts import RECORD_COLUMNS  # noqa: E402
from downlink.testing.consumers import wait_caught_up  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"


def make_records(n: int) -> list[dict[str, Any]]:
    """N distinct valid records in the v3 JSON shape."""
    now = int(time.time())
    return [
        {
            "record_format_version": "4",
            "classification": f"org.clearlinux/bench/c{i % 50}",
            "severity": str(1 + i % 4),
            "machine_id": f"{i % 5000:032x}",
            "creation_timestamp": str(now - i),
            "arch": "x86_64",
            "host_type": "no_sv_file|no_pn_file|no_pvr_file",
            "build": str(30000 + i % 40),
            "kernel_version": "6.18.44-fc-v657",
            "payload_format_version": "1",
            "system_name": "clear-linux-os",
            "board_name": "no_bn_file|no_bv_file",
            "cpu_model": "Intel(R)",
            "bios_version": "no_bv_file",
            "event_id": f"{i:032x}",
            "payload": f"payload of record {i} " + "x" * 200,
        }
        for i in range(n)
    ]


def copy_rows(dsn: str, records: list[dict[str, Any]]) -> float:
    """COPY the validated records into ``records``; return seconds taken."""
    rows = []
    now = time.time()
    for rec in records:
        fields = {k: v for k, v in rec.items() if k != "payload"}
        fields["x_telemetry_tid"] = TID
        rows.append(validate(fields, rec["payload"].encode(), allowed_tids=[TID],
                             received_at=now))
    cols = [c for c in RECORD_COLUMNS if c in rows[0]]
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY records ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in cols])
        conn.commit()
    return time.perf_counter() - started


def post_bulk(
    url: str, records: list[dict[str, Any]], batch: int, clients: int, lag: LagSampler
) -> tuple[float, float]:
    """Post the records as NDJSON batches; return the seconds taken, and until the
    consumers had handled them too (their lag sampled meanwhile)."""
    bodies = [b"\n".join(orjson.dumps(r) for r in records[i:i + batch])
              for i in range(0, len(records), batch)]
    headers = {"Content-Type": "application/x-ndjson", "X-Telemetry-TID": TID}

    def send(body: bytes) -> int:
        with httpx.Client(timeout=120) as client:
            resp = client.post(url + "/api/v1/records/bulk", content=body, headers=headers)
            resp.raise_for_status()
            return int(resp.json()["accepted"])

    started = time.perf_counter()
    lag.recording = True
    try:
        with ThreadPoolExecutor(clients) as pool:
            accepted = sum(pool.map(send, bodies))
    finally:
        lag.recording = False
    took = time.perf_counter() - started
    if accepted != len(records):
        raise RuntimeError(f"only {accepted} of {len(records)} records accepted")
    wait_caught_up(url, timeout=600, interval=0.2)
    return took, time.perf_counter() - started


# Where the consumers run: a row label each (bench/ingest.py's layouts).
LABELS = {"in-process": "", "apart": ", consume apart"}


def run_layout(
    url: str, workers: int, layout: str, args: argparse.Namespace,
    records: list[dict[str, Any]], tmp: Path,
) -> tuple[float, float, LagSampler]:
    """Post every record to a server with its consumers in ``layout``."""
    env = {"DOWNLINK_RUN_CONSUMERS": "off"} if layout == "apart" else {}
    server = LiveServer(url, workers=workers, env=env, log=tmp / "server.log")
    server.start(timeout=180)
    consumer = None
    try:
        if layout == "apart":
            consumer = LiveServer(url, command="consume", log=tmp / "consume.log").start(
                timeout=180)
        with LagSampler(url) as lag:
            took, derived = post_bulk(server.url, records, args.batch, args.clients, lag)
    finally:
        server.stop()
        if consumer is not None:
            consumer.stop()
    return took, derived, lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="server process counts to measure")
    parser.add_argument(
        "--layouts", default="in-process,apart",
        help="in-process: consumers in every serve worker; apart: serve with "
             "DOWNLINK_RUN_CONSUMERS=off and one `downlink consume` beside it",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    if not set(layouts) <= set(LABELS):
        parser.error(f"--layouts: each of {', '.join(LABELS)}")
    about = machine()
    records = make_records(args.records)
    rows: list[list[object]] = []
    pg = TempPostgres(fsync=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-bulk-"))
    try:
        url = pg.create_database("bulk")
        workers = [int(w) for w in args.workers.split(",")]
        server = LiveServer(url, log=tmp / "server.log").start()  # creates the schema
        server.stop()
        dsn = f"host=127.0.0.1 port={pg.port} user=postgres dbname=bulk"
        copy_s = copy_rows(dsn, records)
        copy_rate = args.records / copy_s
        rows.append(["PostgreSQL COPY (psycopg, one transaction)", round(copy_rate), "1.00",
                     "-", "-"])
        for layout in layouts:
            for n in workers:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    # Every run starts from empty tables, rollups included.
                    tables = ", ".join(
                        ["records", "consumers", *(t.name for t in ROLLUP_TABLES)])
                    conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
                bulk_s, derived_s, lag = run_layout(url, n, layout, args, records, tmp)
                bulk_rate = args.records / bulk_s
                rows.append([f"POST /api/v1/records/bulk, PostgreSQL ({args.batch}/request, "
                             f"{args.clients} clients, {n} worker{'s' if n > 1 else ''}"
                             f"{LABELS[layout]})",
                             round(bulk_rate), f"{bulk_rate / copy_rate:.2f}",
                             round(args.records / derived_s), f"{lag.p99():.2f}"])
                print(rows[-1], flush=True)
        for layout in layouts:
            for n in workers:
                sqlite_url = f"sqlite:///{tmp / f'bulk-{n}-{layout}.db'}"
                lite_s, derived_s, lag = run_layout(sqlite_url, n, layout, args, records, tmp)
                rows.append([f"POST /api/v1/records/bulk, SQLite ({args.batch}/request, "
                             f"{args.clients} clients, {n} worker{'s' if n > 1 else ''}"
                             f"{LABELS[layout]})",
                             round(args.records / lite_s), "-",
                             round(args.records / derived_s), f"{lag.p99():.2f}"])
                print(rows[-1], flush=True)
    finally:
        pg.stop()
    result = table(["method", "records/s", "ratio to COPY",
                    "records/s until derived data caught up", "lag p99 s"], rows)
    print(result)
    body = (
        "## Bulk ingest against COPY\n\n"
        f"`python bench/bulk.py --records {args.records} --batch {args.batch} --clients "
        f"{args.clients} --workers {args.workers} --layouts {args.layouts}` — {about}\n\n"
        f"{args.records:,} distinct records (about 250-byte payloads) into an empty `records` "
        "table with all its indexes, on a PostgreSQL cluster with fsync=on. COPY gets the "
        "rows already validated; the bulk endpoint parses NDJSON, validates each record "
        "with the collector's rules, commits them and answers per item (target: at least "
        "2/3 of COPY); the consumers then group the crashes and update the rollups after "
        "the ack (*until derived data caught up*); *lag p99* is the age of the oldest "
        "record they had not handled, sampled every 0.2 s while the posts ran. *consume "
        "apart*: the server with `DOWNLINK_RUN_CONSUMERS=off` and one `downlink consume` "
        "process beside it on the same machine (its CPU shared). "
        f"Load average at the end {os.getloadavg()[0]:.1f}.\n\n"
        + result
    )
    if not args.no_write:
        write_section("bulk", body)


if __name__ == "__main__":
    main()
