"""Dashboard speed at scale: load N realistic records, time every page and JSON twin.

    python bench/dashboards.py                 # 1M records, SQLite and PostgreSQL
    python bench/dashboards.py --records 10000000 --fast-load --db sqlite \
        --section dashboards-10m-sqlite
    python bench/dashboards.py --records 100000 --no-write   # quick look, docs untouched

Records come from :class:`downlink.testing.generate.RecordGenerator` (thousands of
machines, rolling builds, the Clear Linux classification mix, crashprobe and kernel
backtraces, MCE payloads) and are loaded with their derived data (what the Clear
Linux consumers derive: crash grouping, then rollups, computed in the load's own
transaction, the consumers' cursors moved past the records at the end) followed by
one multi-row INSERT per 5,000 records: the writer's
``insert_records`` without its retransmission lookup and per-row RETURNING, which
generated records never need. SQLite loads with
``synchronous=OFF`` and PostgreSQL runs with ``fsync=off``: only the load is faster for
it, not the queries. Each view is then fetched over HTTP from a real ``downlink serve``:
every page and JSON twin that docs/web.md lists (the bench fails if the navigation
bar links a page it does not time), each the first request after start-up, then the
median and worst of five. Sources are skewed as in production: the substrate pages are
timed first on the loaded database, which has no substrate records, then a handful of
substrate nodes send a few messages over the websocket. The section ``dashboards`` of
docs/performance.md (or the one named by ``--section``) is replaced with the results.

``--fast-load`` loads the same records with the same derivation in the same order,
so records, crash groups and rollups come out identical (tests/web/test_bench_fast_load
checks it), but four to seven times faster, for 10M-record runs: 100,000-record batches, records
written with PostgreSQL ``COPY`` or one SQLite ``executemany``, and the plain indexes
of ``records`` dropped for the load and rebuilt afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, insert
from websockets.asyncio.client import connect

from downlink.settings import Settings
from downlink.sources.clearlinux.consumers import COUNTS_NAME, CRASHES_NAME, assign_groups
from downlink.sources.clearlinux.rollups import update_rollups
from downlink.sources.substrate.connections import NAME as SUBSTRATE_CONNECTIONS
from downlink.store import cursors
from downlink.store.database import Store
from downlink.store.inserts import RECORD_COLUMNS
from downlink.store.tables import records
from downlink.testing.generate import RecordGenerator
from downlink.testing.live import LiveServer
from downlink.testing.postgres import TempPostgres

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
SECTION = "dashboards"
BATCH = 5000
FAST_BATCH = 100_000
DAYS = 60
SLOW_MS = 100
SLOW_FIRST_MS = 1000
SUBSTRATE_NODES = 3
SUBSTRATE_MESSAGES = 5
SKEW = (
    "Sources are skewed as they will be in production: millions of Clear Linux records, "
    "no substrate records for the first two rows, then a handful "
    f"({SUBSTRATE_NODES} substrate nodes sent {SUBSTRATE_MESSAGES} messages each over the "
    "websocket) for every other row."
)


def derive(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """What the Clear Linux consumers derive from new records, before their insert:
    crash groups (into the rows' ``guilty_id``), then every rollup."""
    assign_groups(conn, rows)
    update_rollups(conn, rows)


def _skip_consumers(conn: Connection) -> None:
    """The loaded records' derived data is written: the consumers start after them.

    Substrate's node connections consumer too: the load has no substrate records."""
    for name in (CRASHES_NAME, COUNTS_NAME, SUBSTRATE_CONNECTIONS):
        cursors.skip_to_end(conn, name, records)


def _insert(conn: Connection, rows: list[dict[str, Any]], processors: list[Any]) -> None:
    # insert_records minus its retransmission lookup and RETURNING (every generated
    # record is new): the same processors run on the same rows, then one executemany.
    for process in processors:
        process(conn, rows)
    conn.execute(insert(records), [{c: r.get(c) for c in RECORD_COLUMNS} for r in rows])


def _loader(
    url: str, n: int, seed: int, now: float | None, random_mce_status: float = 0.0
) -> tuple[Store, RecordGenerator, list[Any]]:
    """A migrated store without fsync, the record generator and the processors."""
    store = Store(Settings(database_url=url, sqlite_synchronous="OFF"))
    store.migrate()
    gen = RecordGenerator(seed=seed, machines=max(1000, n // 100), days=DAYS, now=now,
                          random_mce_status=random_mce_status)
    return store, gen, [derive]


def load(url: str, n: int, seed: int, now: float | None = None) -> float:
    """Load ``n`` generated records; return records per second."""
    store, gen, processors = _loader(url, n, seed, now)
    started = time.perf_counter()
    done = 0
    try:
        while done < n:
            rows = list(gen.rows(min(BATCH, n - done)))
            store.run_write(_insert, rows, processors)
            done += len(rows)
            if done % (BATCH * 40) == 0:
                rate = done / (time.perf_counter() - started)
                print(f"  {done:,} records ({rate:,.0f}/s)", flush=True)
        store.run_write(_skip_consumers)
        store.run_write(lambda c: c.exec_driver_sql("ANALYZE"))
    finally:
        store.close()
    return n / (time.perf_counter() - started)


def _secondary_indexes(conn: Connection) -> list[tuple[str, str]]:
    """Return (name, CREATE statement) of the plain indexes on ``records``."""
    if conn.dialect.name == "postgresql":
        sql = (
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'records' "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
    else:
        sql = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'records' AND sql IS NOT NULL"
        )
    return [(str(name), str(ddl)) for name, ddl in conn.exec_driver_sql(sql)]


def _bulk_insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    columns = ", ".join(RECORD_COLUMNS)
    values = [tuple(r.get(c) for c in RECORD_COLUMNS) for r in rows]
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY records ({columns}) FROM STDIN") as copy:
            for v in values:
                copy.write_row(v)
        return
    marks = ", ".join("?" * len(RECORD_COLUMNS))
    conn.exec_driver_sql(f"INSERT INTO records ({columns}) VALUES ({marks})", values)


def _fast_batch(conn: Connection, rows: list[dict[str, Any]], processors: list[Any]) -> None:
    if conn.dialect.name == "sqlite":
        # The rollup upserts land all over tables bigger than the default 2 MB cache.
        conn.exec_driver_sql("PRAGMA cache_size = -2000000")
    for process in processors:
        process(conn, rows)
    _bulk_insert(conn, rows)


def fast_load(
    url: str,
    n: int,
    seed: int,
    now: float | None = None,
    batch: int = FAST_BATCH,
    random_mce_status: float = 0.0,
) -> float:
    """Load like :func:`load`, faster: big batches, COPY or executemany, indexes last.

    The same generator and the same processors (crash grouping, rollups) run on the
    same records in the same order, so ids, guilty ids and rollup counts come out the
    same; only the batches are bigger (rollups are sums, so batch size does not change
    them), records go in with PostgreSQL ``COPY`` or one SQLite ``executemany``, and
    the plain indexes on ``records`` are dropped for the load and created afterwards.
    ``random_mce_status``: the share of machine checks with a random STATUS word
    (:class:`~downlink.testing.generate.RecordGenerator`).
    """
    store, gen, processors = _loader(url, n, seed, now, random_mce_status)
    started = time.perf_counter()
    done = 0
    try:
        indexes = store.run(_secondary_indexes)

        def drop(conn: Connection) -> None:
            for name, _ in indexes:
                conn.exec_driver_sql(f"DROP INDEX {name}")

        store.run_write(drop)
        while done < n:
            rows = list(gen.rows(min(batch, n - done)))
            store.run_write(_fast_batch, rows, processors)
            done += len(rows)
            rate = done / (time.perf_counter() - started)
            print(f"  {done:,} records ({rate:,.0f}/s)", flush=True)
        t = time.perf_counter()

        def create(conn: Connection) -> None:
            for _, ddl in indexes:
                conn.exec_driver_sql(ddl)

        store.run_write(create)
        store.run_write(_skip_consumers)
        print(f"  indexes built in {time.perf_counter() - t:.0f} s", flush=True)
        store.run_write(lambda c: c.exec_driver_sql("ANALYZE"))
    finally:
        store.close()
    return n / (time.perf_counter() - started)


def migrate_existing(url: str) -> float:
    """Bring a database loaded earlier up to date (0.0: no load rate to report)."""
    store = Store(Settings(database_url=url))
    try:
        started = time.perf_counter()
        store.migrate()
        print(f"  migrated in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        store.close()
    return 0.0


# A view to time: what it shows, its HTML page and its JSON twin (None: it has none).
View = tuple[str, str | None, str | None]


def _twin(page: str) -> str:
    path, _, query = page.partition("?")
    return f"{path}.json" + (f"?{query}" if query else "")


def _both(what: str, page: str) -> View:
    return (what, page, _twin(page))


def views(client: httpx.Client) -> list[View]:
    """Every page and JSON twin of docs/web.md, on the top crash group and newest records."""
    today = datetime.now(UTC).date()
    since = (today - timedelta(days=DAYS)).isoformat()
    since90 = (today - timedelta(days=90)).isoformat()
    top = client.get("/crashes.json").json()["guilties"]
    gid = top[0]["guilty_id"] if top else 1
    build = next(iter(top[0]["per_build"]), "") if top else ""
    newest = client.get("/records.json").json()["records"][0]
    machine, record_id = newest["machine_id"], newest["id"]
    return [
        _both("records: newest page", "/records"),
        _both("records: one classification", "/records?classification=org.clearlinux/crash/clr"),
        _both("records: one machine", f"/records?machine_id={machine}"),
        _both("records: one source (few records)", "/records?source=substrate"),
        _both("records: payload text (scan)", "/records?q=wl_resource_post_event"),
        _both("records: one record", f"/records/{record_id}"),
        _both("builds: 30 days", "/builds"),
        _both("builds: 60 days, severity 3", f"/builds?from={since}&severity=3"),
        _both("stats: 30 days", "/stats"),
        _both(
            "stats: 60 days, classification *",
            f"/stats?from={since}&classification=org.clearlinux/crash/*",
        ),
        _both("crashes: top 50, 7 days", "/crashes"),
        _both("crashes: top 50, 60 days", f"/crashes?from={since}"),
        _both("crashes: top 50, 60 days, one build", f"/crashes?from={since}&build={build}"),
        _both("crash group (top), 7 days", f"/crashes/{gid}"),
        _both("crash group (top), 60 days", f"/crashes/{gid}?from={since}"),
        _both("crash group backtraces (50)", f"/crashes/{gid}/backtraces"),
        _both("crashes: never-guilty frames", "/crashes/blacklist"),
        ("crashes: regroup job status", None, "/crashes/regroup.json"),
        _both("mce: year to date", "/mce"),
        _both("mce: 90 days", f"/mce?from={since90}"),
        _both("thermal: 5 weeks", "/thermal"),
        _both("population: 28 days by day", "/population"),
        _both("population: 60 days by week", f"/population?from={since}&bucket=week"),
        _both("population: 60 days by month", f"/population?from={since}&bucket=month"),
        _both("substrate nodes: 60 minutes", "/substrate"),
        _both("substrate nodes: 24 hours", "/substrate?minutes=1440"),
        _both("plug-in severity: 30 days", "/plugins/severity"),
        # Sources with no records here (the skew the other way round).
        _both("ooni: measurements (none stored)", "/ooni/measurements"),
        _both("ooni: chart (none stored)", "/ooni/chart"),
        _both("fuel-stats: report (none stored)", "/fuel"),
        ("fuel-stats: failures (none stored)", "/fuel/failures", None),
        ("API docs (Swagger UI)", "/docs", None),
    ]


def _nav(client: httpx.Client) -> set[str]:
    """The pages the navigation bar links to."""
    html = client.get("/records").text
    nav = html.split('<nav class="top">', 1)[1].split("</nav>", 1)[0]
    return {part.split('"', 1)[0] for part in nav.split('href="')[1:]}


def _thread_ns(pid: int) -> int:
    """CPU time of every thread of one process so far, in ns (0 once it has gone)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


class CpuMeter:
    """CPU time spent serving: the server's processes and, on PostgreSQL, its backends.

    On a shared machine a request's wall time includes waiting for a core; the CPU it
    used does not, so it shows what the view costs on an idle machine.
    """

    def __init__(self, server: LiveServer, url: str) -> None:
        assert server.proc is not None
        self.group = os.getpgid(server.proc.pid)
        self.url = url

    def _pids(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.group:  # field 5, the process group
                pids.append(int(stat.parent.name))
        if self.url.startswith("postgresql"):
            import psycopg

            dsn = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            pids += [int(pid) for (pid,) in rows]
        return pids

    def ns(self) -> dict[int, int]:
        """CPU time of each serving process so far, by process id."""
        return {pid: _thread_ns(pid) for pid in self._pids()}

    @staticmethod
    def used(before: dict[int, int], after: dict[int, int]) -> int:
        """CPU time used between two readings: each process's growth (a process that
        started meanwhile counts whole; one that ended, such as a PostgreSQL backend
        whose connection closed, counts nothing rather than subtracting its total)."""
        return sum(max(0, ns - before.get(pid, 0)) for pid, ns in after.items())


def _time(client: httpx.Client, path: str, cpu: CpuMeter) -> tuple[float, float, float, float]:
    """First request, then the median and worst of five, and CPU per request, in ms."""
    times = []
    used = 0
    for i in range(6):
        before = cpu.ns() if i else {}
        t = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        if i:
            used += cpu.used(before, cpu.ns())
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return times[0], statistics.median(times[1:]), max(times[1:]), used / 5 / 1e6


async def _send_nodes(url: str, nodes: int, messages: int) -> None:
    for node in range(nodes):
        async with connect(url, open_timeout=60) as ws:
            peer = f"12D3KooWBench{node:04d}"
            frames: list[dict[str, Any]] = [
                {"id": 1, "ts": _RFC3339, "payload": {**_CONNECTED, "network_id": peer}}
            ]
            frames += [
                {"id": 1, "ts": _RFC3339, "payload": {"msg": "system.interval", "height": i}}
                for i in range(messages - 1)
            ]
            for f in frames:
                await ws.send(json.dumps(f).encode())
            await ws.send(json.dumps({"downlink_flush": node}))
            while json.loads(await ws.recv()).get("downlink_flushed") != node:
                pass


_RFC3339 = "2026-01-01T00:00:00.000000001+00:00"
_CONNECTED = {
    "msg": "system.connected",
    "name": "bench",
    "implementation": "Substrate Node",
    "version": "2.0.0",
    "chain": "Bench",
    "genesis_hash": "0x" + "ab" * 32,
}

# view, "page" or "JSON", first, median, worst, CPU per request (ms)
Timing = tuple[str, str, float, float, float, float]


def time_views(url: str) -> list[Timing]:
    """Return (view, kind, first ms, median ms, worst ms) of every page and twin.

    Against a live server started for this: the substrate pages first as the database
    was loaded (no substrate records: the skewed-source case), then, once a handful
    of substrate nodes have sent a few messages over the websocket, every view.
    """
    out: list[Timing] = []

    def one(what: str, kind: str, path: str) -> None:
        first, med, worst, used = _time(client, path, cpu)
        out.append((what, kind, first, med, worst, used))
        print(
            f"  {what:44s} {kind:4s} first {first:8.1f}  median {med:8.1f}  worst {worst:8.1f}"
            f"  CPU {used:7.1f} ms",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(url, log=Path(tmp) / "server.log").start(timeout=600)
        cpu = CpuMeter(server, url)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                substrate = client.get("/records.json?source=substrate").json()["records"]
                if not substrate:
                    for kind, path in (("page", "/substrate"), ("JSON", "/substrate.json")):
                        one("substrate nodes: 60 minutes, no substrate records", kind, path)
                ws_url = server.url.replace("http://", "ws://", 1) + "/"
                asyncio.run(_send_nodes(ws_url, SUBSTRATE_NODES, SUBSTRATE_MESSAGES))
                timed = views(client)
                paths = {page.split("?", 1)[0] for _, page, _ in timed if page is not None}
                missing = {p for p in _nav(client) if p not in paths}
                assert not missing, f"pages in the navigation bar that the bench misses: {missing}"
                for what, page, twin in timed:
                    if page is not None:
                        one(what, "page", page)
                    if twin is not None:
                        one(what, "JSON", twin)
        finally:
            server.stop()
    return out


def regroup(url: str) -> dict[str, float]:
    """Mark the most common guilty frame never guilty through the web UI and time the job.

    Against a live server: how long the POST takes to answer (it only queues the regroup
    job), how long the job runs until the crash rollups are rebuilt, how many records
    changed group, and the slowest single-record collector post while it ran (the job
    commits a chunk at a time, so ingestion is not held up).
    """
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(url, log=Path(tmp) / "server.log").start(timeout=600)
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                _wait_for_jobs(client)  # one left over by an interrupted run resumes first
                since = (datetime.now(UTC).date() - timedelta(days=DAYS)).isoformat()
                top = client.get(f"/crashes.json?from={since}").json()["guilties"][0]
                frame = json.dumps([top["function"], top["module"]])
                started = time.perf_counter()
                answer = client.post(
                    "/crashes/blacklist",
                    data={"frame": frame},
                    headers={"Accept": "application/json"},
                )
                post_ms = (time.perf_counter() - started) * 1000
                assert answer.status_code == 202, answer.text[:300]
                worst_ingest = 0.0
                n = 0
                while True:
                    job = client.get("/crashes/regroup.json").json()["regroup"]
                    if job["state"] in ("done", "failed"):
                        break
                    n += 1
                    record = {**INGEST_RECORD, "event_id": f"{int(time.time() * 1e6) + n:032x}"}
                    t = time.perf_counter()
                    posted = client.post("/v2/collector", json=record, headers=INGEST_HEADERS)
                    worst_ingest = max(worst_ingest, (time.perf_counter() - t) * 1000)
                    assert posted.status_code == 201, posted.text[:300]
                    time.sleep(0.5)
                assert job["state"] == "done", job
                return {
                    "post_ms": post_ms,
                    "job_s": time.perf_counter() - started,
                    "changed": float(job["changed"]),
                    "ingest_worst_ms": worst_ingest,
                    "ingest_posts": float(n),
                }
        finally:
            server.stop()


def _wait_for_jobs(client: httpx.Client) -> None:
    while True:
        job = client.get("/crashes/regroup.json").json()["regroup"]
        if job is None or job["state"] in ("done", "failed"):
            return
        time.sleep(1)


INGEST_HEADERS = {"X-Telemetry-TID": "6907c830-eed9-4ce9-81ae-76daf8d88f0f"}
INGEST_RECORD = {
    "record_format_version": "4",
    "classification": "org.clearlinux/bench/regroup",
    "severity": "1",
    "machine_id": "bench",
    "creation_timestamp": str(int(time.time())),
    "arch": "x86_64",
    "host_type": "bench|bench|bench",
    "build": "1",
    "kernel_version": "6.1.0",
    "payload_format_version": "1",
    "system_name": "clear-linux-os",
    "board_name": "bench",
    "cpu_model": "bench",
    "bios_version": "bench",
    "payload": "posted while the regroup job runs",
}


def size_of(url: str) -> str:
    """Return the database size on disk."""
    store = Store(Settings(database_url=url))
    try:
        if store.dialect == "postgresql":
            n = store.run(
                lambda c: c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
            )
        else:
            n = Path(url.removeprefix("sqlite:///")).stat().st_size
        return f"{int(n) / 1e9:.2f} GB"
    finally:
        store.close()


def machine() -> str:
    """Where the numbers were taken."""
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, nproc {nproc}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"load average at start {os.getloadavg()[0]:.1f} (shared machine)"
    )


def write_section(body: str, section: str = SECTION) -> None:
    """Replace (or append) this benchmark's section of docs/performance.md."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text.split(start, 1)[0] + block + text.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--fast-load",
        action="store_true",
        help="load with big batches, COPY / executemany and indexes built last",
    )
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    ap.add_argument(
        "--existing",
        metavar="DATABASE_URL",
        help="time the views of a database loaded earlier (migrated first) instead of loading",
    )
    ap.add_argument(
        "--no-regroup",
        action="store_true",
        help="skip the never-guilty regroup measurement (it changes the crash groups)",
    )
    ap.add_argument(
        "--section", default=SECTION, help="section of docs/performance.md to (re)write"
    )
    args = ap.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if args.existing:
        kinds = ["postgresql" if args.existing.startswith("postgresql") else "sqlite"]
    about = machine()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="downlink-bench-") as tmp:
        for kind in kinds:
            pg: TempPostgres | None = None
            if args.existing:
                url = args.existing
            elif kind == "sqlite":
                url = f"sqlite:///{tmp}/dashboards.db"
            else:
                pg = TempPostgres().start()
                url = pg.create_database("dashboards")
            try:
                if args.existing:
                    rate = migrate_existing(url)
                else:
                    print(f"{kind}: loading {args.records:,} records", flush=True)
                    loader = fast_load if args.fast_load else load
                    rate = loader(url, args.records, args.seed)
                print(f"{kind}: {rate:,.0f} records/s; timing views", flush=True)
                timings = time_views(url)
                size = size_of(url)
                job = None if args.no_regroup else regroup(url)
                if job is not None:
                    print(
                        f"{kind}: blacklist POST {job['post_ms']:.0f} ms; regroup job "
                        f"{job['job_s']:.1f} s ({job['changed']:,.0f} records); worst collector "
                        f"post meanwhile {job['ingest_worst_ms']:.0f} ms"
                    )
                results[kind] = {
                    "rate": rate,
                    "timings": timings,
                    "size": size,
                    "regroup": job,
                }
            finally:
                if pg is not None:
                    pg.stop()
    if args.no_write:
        return
    lines = [
        f"## Dashboards (web views), {args.records:,} records",
        "",
        f"`python bench/dashboards.py {' '.join(sys.argv[1:])}` — {args.records:,} generated "
        f"records over {DAYS} days; {about}.",
        "Every page and JSON twin of docs/web.md, fetched from one `downlink serve` worker: "
        f"the first request after start-up, then the median and worst of five; in "
        "brackets the CPU time one request used (mean of the five: the server's "
        "processes and, on PostgreSQL, its backends), which waiting for a core on a "
        f"shared machine does not inflate. {SKEW} "
        f"Bold: over {SLOW_MS} ms median or {SLOW_FIRST_MS} ms first.",
        "",
    ]
    kinds_run = list(results)
    header = (
        "| view | | "
        + " | ".join(f"{k} first / median / worst ms (CPU ms)" for k in kinds_run)
        + " |"
    )
    lines += [header, "|---|---|" + "---|" * len(kinds_run)]
    rows: dict[tuple[str, str], list[str]] = {}
    for r in results.values():
        for what, kind, first, med, worst, used in r["timings"]:  # type: ignore[attr-defined]
            cell = f"{first:.1f} / {med:.1f} / {worst:.1f}"
            if med > SLOW_MS or first > SLOW_FIRST_MS:
                cell = f"**{cell}**"
            cell += f" ({used:.1f})"
            rows.setdefault((what, kind), []).append(cell)
    for (what, kind), cells in rows.items():
        lines.append(f"| {what} | {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    how = (
        "fast load: processors on 100,000-record batches, COPY / executemany, indexes last"
        if args.fast_load
        else "processors + bulk INSERT"
    )
    for kind, r in results.items():
        loaded = f"load {r['rate']:,.0f} records/s ({how})" if r["rate"] else "loaded earlier"
        line = f"- {kind}: {loaded}; database {r['size']}."
        done: dict[str, float] | None = r["regroup"]  # type: ignore[assignment]
        if done is not None:
            line += (
                f" Marking the top guilty frame never guilty: the POST answered in "
                f"{done['post_ms']:.0f} ms; the background job regrouped {done['changed']:,.0f} "
                f"records and rebuilt the crash rollups in {done['job_s']:.1f} s; "
                f"{done['ingest_posts']:.0f} collector posts meanwhile, the slowest "
                f"{done['ingest_worst_ms']:.0f} ms."
            )
        lines.append(line)
    write_section("\n".join(lines), args.section)
    print(f"wrote section {args.section!r} of docs/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
