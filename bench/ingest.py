"""Ingest benchmark: single-record /v2/collector posts per second and latency.

Runs, in one go and with the same load generator (wrk, see ``load.py``):

* the do-nothing ASGI app (``ceiling.py``) under uvicorn: the ceiling;
* ``downlink serve`` on SQLite (synchronous=FULL) and on PostgreSQL (fsync=on), with
  its consumers in every worker (``in-process``, the default) and with
  ``DOWNLINK_RUN_CONSUMERS=off`` and one ``downlink consume`` process beside it
  (``apart``: the same machine, so its CPU is shared with the server's);

each with 1, 2 and 4 server processes, then checks that every success answer is a
stored record, prints a table and writes it into docs/performance.md.

While Downlink is under load, the lag of its consumers (the Clear Linux crash grouping
and rollups, maintained after the ack) is sampled from the database every 0.2 s: the
age of the oldest record not yet handled by the furthest-behind consumer. The table
gives its p99 and maximum over the measured run and how long the consumers took to
catch up once the load stopped.

    python bench/ingest.py [--seconds 10] [--connections 32] [--workers 1,2,4]
                           [--layouts in-process,apart]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from lag import LagSampler  # noqa: E402
from load import LoadResult, need_wrk, run_wrk  # noqa: E402

from downlink.store.tables import records  # noqa: E402
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres, free_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
WARM_UP_S = 5
HEADERS = ["server", "workers", "records/s", "p50 ms", "p99 ms", "errors",
           "ratio to ceiling", "lag p99 s", "lag max s", "caught up s"]


class Ceiling:
    """The do-nothing app under uvicorn with ``workers`` processes."""

    def __init__(self, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "ceiling:app",
             "--port", str(self.port), "--workers", str(workers), "--log-level", "warning",
             "--no-access-log", "--timeout-keep-alive", "5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> Ceiling:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url + "/v2/collector", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("ceiling app did not start")

    def __exit__(self, *_exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def stored(database_url: str) -> int:
    """Records in the database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(records)).scalar_one())
    finally:
        engine.dispose()


def measure(
    url: str, seconds: float, connections: int, lag: LagSampler | None = None
) -> LoadResult:
    """A warm-up, then the measured run (sampling the consumers' lag during it).

    Five seconds: a fresh PostgreSQL database ingests at about half its steady rate for
    its first several seconds (empty tables and indexes growing, planner statistics
    not yet gathered), which a 1 s warm-up left inside the measurement.
    """
    run_wrk(url, WARM_UP_S, connections)
    if lag is not None:
        lag.recording = True
    try:
        return run_wrk(url, seconds, connections)
    finally:
        if lag is not None:
            lag.recording = False


# Where the consumers run: a row label each.
LABELS = {"in-process": "", "apart": " (consume apart)"}


def run_layout(
    url: str, workers: int, layout: str, args: argparse.Namespace, tmp: Path
) -> tuple[LoadResult, LagSampler, float]:
    """One measured run of ``downlink serve`` with its consumers in ``layout``."""
    env = {"DOWNLINK_RUN_CONSUMERS": "off"} if layout == "apart" else {}
    server = LiveServer(url, workers=workers, env=env, log=tmp / "server.log").start()
    consumer = None
    try:
        if layout == "apart":
            consumer = LiveServer(url, command="consume", log=tmp / "consume.log").start()
        with LagSampler(url) as lag:
            res = measure(server.url + "/v2/collector", args.seconds, args.connections, lag)
            drain = lag.catch_up_s()
    finally:
        server.stop()
        if consumer is not None:
            consumer.stop()
    return res, lag, drain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", default="1,2,4", help="server process counts")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--layouts", default="in-process,apart",
        help="in-process: consumers in every serve worker; apart: serve with "
             "DOWNLINK_RUN_CONSUMERS=off and one `downlink consume` beside it",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    need_wrk()
    workers = [int(w) for w in args.workers.split(",")]
    databases = args.databases.split(",")
    layouts = args.layouts.split(",")
    if not set(layouts) <= set(LABELS):
        parser.error(f"--layouts: each of {', '.join(LABELS)}")
    about = machine()
    rows: list[list[object]] = []
    lost: list[str] = []
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    tmp = Path(tempfile.mkdtemp(prefix="downlink-bench-"))
    try:
        for n in workers:
            with Ceiling(n) as ceiling:
                top = measure(ceiling.url + "/v2/collector", args.seconds, args.connections)
            rows.append(["do-nothing ASGI", n, round(top.per_second), top.p50_ms, top.p99_ms,
                         top.status_errors + top.socket_errors, "1.00", "-", "-", "-"])
            print(table(HEADERS, rows[-1:]))
            for db in databases:
                for layout in layouts:
                    if db == "sqlite":
                        url = f"sqlite:///{tmp / f'ingest-{n}-{layout}.db'}"
                    else:
                        assert pg is not None
                        url = pg.create_database(f"ingest_{n}_{layout.replace('-', '_')}")
                    res, lag, drain = run_layout(url, n, layout, args, tmp)
                    count = stored(url)
                    # The warm-up stored records too: count >= successes of the measured run.
                    if count < res.ok:
                        lost.append(f"{db} x{n} {layout}: {res.ok} successes but {count} "
                                    "records stored")
                    ratio = res.per_second / top.per_second if top.per_second else 0.0
                    rows.append([f"downlink {db}{LABELS[layout]}", n, round(res.per_second),
                                 res.p50_ms, res.p99_ms, res.status_errors + res.socket_errors,
                                 f"{ratio:.2f}", f"{lag.p99():.2f}",
                                 f"{max(lag.samples, default=0.0):.2f}", f"{drain:.2f}"])
                    print(table(HEADERS, rows[-1:]))
    finally:
        if pg is not None:
            pg.stop()
    result = table(HEADERS, rows)
    print(result)
    if lost:
        print("LOST RECORDS:", *lost, sep="\n  ")
    load = f"Load average at the end {os.getloadavg()[0]:.1f}. "
    body = (
        "## Ingest: single-record posts\n\n"
        f"`python bench/ingest.py --seconds {args.seconds:g} --connections "
        f"{args.connections} --workers {args.workers} --layouts {args.layouts}` — "
        f"{about} {load}\n\n"
        f"wrk, 1 thread, {args.connections} keep-alive connections, {args.seconds:g} s per "
        f"run after a {WARM_UP_S} s warm-up; each request one `POST /v2/collector` with the 2.3.x "
        "client's headers and a unique event id. *ratio* is records/s divided by the "
        "do-nothing app's requests/s with the same number of workers (target >= 0.35). "
        "*lag* is the age of the oldest record the consumers (crash grouping, rollups: "
        "after the ack) had not handled, sampled every 0.2 s during the measured run "
        "(target: p99 < 1 s); *caught up* the seconds they needed once the load stopped. "
        "*consume apart*: the server with `DOWNLINK_RUN_CONSUMERS=off` and one "
        "`downlink consume` process beside it on the same machine (its CPU shared). "
        "Every success answer was checked to be a stored record"
        + (": " + "; ".join(lost) if lost else " (none missing).")
        + "\n\n" + result
    )
    if not args.no_write:
        write_section("ingest", body)


if __name__ == "__main__":
    main()
