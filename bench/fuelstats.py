"""fuel-stats benchmark: action-log ingest against COPY, reports and exports at scale.

In one run:

1. On one throwaway PostgreSQL cluster (fsync=on): ``COPY`` of N action logs into the
   empty ``fuel_action_logs``, then (after TRUNCATE) the same N posted to ``POST
   /api/v1/action_logs/`` by ``downlink serve`` in requests of ``--batch`` (Fuel's
   statsenderd sends chunks) from ``--clients`` concurrent clients; the same posts on
   SQLite for reference. Rates and their ratio to COPY, and the CPU each spent per
   action log (the server process, its consumers included, and PostgreSQL's processes,
   from /proc): CPU is what a loaded machine does not inflate.
2. ``--installations`` installation structures (two environments of three nodes each)
   and ``--logs`` action logs loaded straight into a SQLite and a PostgreSQL database
   (action logs by COPY / one executemany, so ``--logs 10000000`` loads in minutes; then
   their dashboard counts computed, as the recount job does), then the latency (median
   of 5) of ``report/installations?refresh=1`` (uncached), the same cached,
   ``/fuel.json`` (every dashboard report), one release of it, the page and ``summary``.
3. ``GET /api/v1/csv/clusters`` of all those installations, streamed, with the
   server's RSS sampled every 20 ms: flat RSS means constant memory.

    python bench/fuelstats.py [--logs-ingest 50000] [--installations 100000] [--logs 1000000]
    python bench/fuelstats.py --parts reports,export --logs 10000000   # the 10M run
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from sqlalchemy import create_engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402

from downlink.sources.fuelstats import counts  # noqa: E402
from downlink.sources.fuelstats.pg_copy import COLUMNS as LOG_COLUMNS  # noqa: E402
from downlink.sources.fuelstats.shape import rows_of, task_fields  # noqa: E402
from downlink.sources.fuelstats.tables import (  # noqa: E402
    clusters,
    installations,
    nodes,
)
from downlink.testing.live import LiveServer  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

RELEASES = ("6.1", "7.0", "8.0", "9.0")
STATUSES = ("operational", "operational", "error", "new", "deployment")


def action_log(uid: str, ext: int) -> dict[str, Any]:
    """One finished nailgun task in statsenderd's shape."""
    status = "error" if ext % 7 == 0 else "ready"
    return {
        "master_node_uid": uid,
        "external_id": ext,
        "body": {
            "id": ext, "actor_id": "a" * 16, "action_group": "cluster_changes",
            "action_name": "deployment" if ext % 3 else "verify_networks",
            "action_type": "nailgun_task",
            "start_timestamp": "2016-05-01T10:00:00.123456",
            "end_timestamp": f"2016-05-01T10:{ext % 60:02d}:00.654321",
            "additional_info": {"parent_task_id": None, "subtasks_ids": [ext + 1, ext + 2],
                                "operation": "deployment", "nodes_from_resp": [1, 2, 3],
                                "ended_with_status": status, "message": None, "output": None},
            "is_sent": False, "cluster_id": ext % 5, "task_uuid": f"{ext:032x}",
        },
    }


def log_row(item: dict[str, Any], now: float) -> dict[str, Any]:
    """The stored row of an action log (what the collector writes)."""
    body = item["body"]
    return {"master_node_uid": item["master_node_uid"], "external_id": item["external_id"],
            "body": body, "action_type": body["action_type"],
            "action_name": body["action_name"], **task_fields(body), "ts_reception": now}


TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int, children: bool = False) -> float:
    """CPU seconds a process has used (and its waited-for children's, if asked)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def pg_cpu(pg: TempPostgres) -> float:
    """CPU seconds of a PostgreSQL cluster so far: the postmaster, its live children and
    (through the postmaster's children's times) the backends that have exited."""
    postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    total = cpu_of(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def copy_logs(dsn: str, items: list[dict[str, Any]]) -> tuple[float, float]:
    """COPY the rows the collector would write; (seconds taken, CPU seconds of this
    process: the rows are built before either is measured)."""
    now = time.time()
    rows = [log_row(i, now) for i in items]
    cols = list(rows[0])
    started, cpu = time.perf_counter(), time.process_time()
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY fuel_action_logs ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([orjson.dumps(row[c]).decode() if c == "body" else row[c]
                                    for c in cols])
        conn.commit()
    return time.perf_counter() - started, time.process_time() - cpu


def post_logs(url: str, items: list[dict[str, Any]], batch: int, clients: int) -> float:
    """POST the action logs in chunks; return seconds taken (every item must be added)."""
    bodies = [orjson.dumps({"action_logs": items[i:i + batch]})
              for i in range(0, len(items), batch)]

    def send(body: bytes) -> int:
        with httpx.Client(timeout=300) as client:
            resp = client.post(url + "/api/v1/action_logs/", content=body,
                               headers={"Content-Type": "application/json"})
            resp.raise_for_status()
            return sum(1 for i in resp.json()["action_logs"] if i["status"] == "added")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        added = sum(pool.map(send, bodies))
    took = time.perf_counter() - started
    if added != len(items):
        raise RuntimeError(f"only {added} of {len(items)} action logs added")
    return took


def caught_up(url: str, timeout: float = 600) -> None:
    """Wait until every consumer has handled every committed row (the failure reports
    follow the action logs after the ack: their CPU belongs to the ingest)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.get(url + "/consumers.json", timeout=60).json()["consumers"]
        if all(c["lag_records"] == 0 for c in found):
            return
        time.sleep(0.2)
    raise RuntimeError("the consumers did not catch up")


def structure(n: int, rng: random.Random) -> dict[str, Any]:
    """A plausible installation structure: two environments of three nodes."""
    envs = []
    for cid in (1, 2):
        envs.append({
            "id": cid, "mode": "ha_compact", "status": rng.choice(STATUSES), "nodes_num": 3,
            "release": {"version": "mitaka-9.0", "os": rng.choice(("Ubuntu", "CentOS")),
                        "name": "Mitaka"},
            "attributes": {"libvirt_type": rng.choice(("kvm", "qemu", "vcenter")),
                           "provision_method": "image", "volumes_ceph": rng.random() < 0.3},
            "installed_plugins": [{"name": "lma_collector", "version": "0.10.0"}],
            "nodes": [{"id": cid * 10 + k, "status": "ready",
                       "roles": rng.choice((["controller"], ["compute", "cinder"],
                                            ["compute"], ["ceph-osd"])),
                       "meta": {"system": {"manufacturer": rng.choice(("Dell", "HP", "Cisco")),
                                           "product": "Model " + str(rng.randint(1, 20))},
                                "cpu": {"total": 32}, "memory": {"total": 2**37}}}
                      for k in range(3)],
        })
    return {"master_node_uid": f"mn-{n:08d}", "clusters_num": 2, "allocated_nodes_num": 6,
            "unallocated_nodes_num": 1, "clusters": envs,
            "fuel_release": {"release": RELEASES[n % 4], "api": "1", "feature_groups": []},
            "fuel_packages": ["nailgun-9.0.0-1", "astute-9.0.0-1"]}


def load(url: str, n_inst: int, n_logs: int) -> None:
    """Fill installations (with their environment and node rows) and action logs."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    rng = random.Random(7)
    now = time.time()
    step = 2000
    with engine.begin() as conn:
        for start in range(0, n_inst, step):
            structs = [structure(n, rng) for n in range(start, min(n_inst, start + step))]
            conn.execute(insert(installations), [
                {"id": start + k + 1, "master_node_uid": s["master_node_uid"], "structure": s,
                 "creation_date": now - rng.random() * 86400 * 365, "modification_date": None,
                 "release": s["fuel_release"]["release"], "is_filtered": k % 50 == 0,
                 "clusters_num": 2} for k, s in enumerate(structs)])
            crows, nrows = [], []
            for k, s in enumerate(structs):
                cs, ns = rows_of(s)
                crows += [{**r, "installation_id": start + k + 1} for r in cs]
                nrows += [{**r, "installation_id": start + k + 1} for r in ns]
            conn.execute(insert(clusters), crows)
            conn.execute(insert(nodes), nrows)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence("
                                 f"'fuel_installation_structures', 'id'), {n_inst})")
    load_logs(engine, n_inst, n_logs, now)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    # Rows loaded past the collector have no counts yet: compute them as the recount
    # job would (the collector keeps them at ingest).
    started = time.perf_counter()
    with engine.begin() as conn:
        counts.rebuild(conn)
    print(f"counts rebuilt in {time.perf_counter() - started:.0f} s", flush=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def log_values(n_inst: int, start: int, stop: int, now: float) -> list[list[Any]]:
    """Action logs ``start`` … ``stop`` as rows of :data:`LOG_COLUMNS` (body as JSON)."""
    out = []
    for i in range(start, stop):
        row = log_row(action_log(f"mn-{(i % n_inst):08d}", i), now - (i % 90) * 86400.0)
        row["body"] = orjson.dumps(row["body"]).decode()
        out.append([row[c] for c in LOG_COLUMNS])
    return out


def load_logs(engine: Any, n_inst: int, n_logs: int, now: float, step: int = 50_000) -> None:
    """Action logs straight into the table: COPY on PostgreSQL, one executemany per
    ``step`` on SQLite (minutes for 10M, where SQLAlchemy statements took hours)."""
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        if engine.dialect.name == "postgresql":
            with driver.cursor() as cur, cur.copy(
                f"COPY fuel_action_logs ({', '.join(LOG_COLUMNS)}) FROM STDIN"
            ) as copy:
                for start in range(0, n_logs, step):
                    for values in log_values(n_inst, start, min(n_logs, start + step), now):
                        copy.write_row(values)
        else:
            assert isinstance(driver, sqlite3.Connection)
            if not driver.in_transaction:
                driver.execute("BEGIN")
            marks = ", ".join("?" for _ in LOG_COLUMNS)
            statement = f"INSERT INTO fuel_action_logs ({', '.join(LOG_COLUMNS)}) VALUES ({marks})"
            for start in range(0, n_logs, step):
                driver.executemany(
                    statement, log_values(n_inst, start, min(n_logs, start + step), now))
        driver.commit()
    finally:
        raw.close()
    print(f"{n_logs:,} action logs loaded in {time.perf_counter() - started:.0f} s", flush=True)


def median_ms(client: httpx.Client, path: str, runs: int = 5) -> float:
    """Median latency of ``path`` in ms (each must answer 200)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        resp = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        resp.raise_for_status()
    return statistics.median(times)


def rss_kib(pid: int) -> int:
    """Resident set size of a process (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def export_rss(server: LiveServer) -> tuple[int, int, int, float]:
    """Stream clusters.csv of everything; (bytes, RSS before, peak RSS, seconds)."""
    assert server.proc is not None
    pid = server.proc.pid
    before = rss_kib(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    size = 0
    started = time.perf_counter()
    with httpx.stream("GET", server.url + "/api/v1/csv/clusters",
                      params={"from_date": "2000-01-01"}, timeout=600) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes():
            size += len(chunk)
    took = time.perf_counter() - started
    done.set()
    sampler.join()
    return size, before, peak, took


def ingest(args: argparse.Namespace, pg: TempPostgres, tmp: Path) -> list[list[object]]:
    """Part 1: COPY against the collector, by rate and by CPU per action log."""
    items = [action_log(f"mn-{i % 500:08d}", i) for i in range(args.logs_ingest)]
    n = len(items)
    rows: list[list[object]] = []
    url = pg.create_database("fuel")
    LiveServer(url, log=tmp / "server.log").start().stop()  # creates the schema
    dsn = f"host=127.0.0.1 port={pg.port} user=postgres dbname=fuel"
    pg_before = pg_cpu(pg)
    took, cpu = copy_logs(dsn, items)
    copy_rate = n / took
    copy_cpu = (cpu + pg_cpu(pg) - pg_before) * 1e6 / n
    rows.append(["PostgreSQL COPY (psycopg, one transaction)", round(copy_rate), "1.00",
                 round(copy_cpu, 1), "1.00"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE fuel_action_logs RESTART IDENTITY")
    for kind in ("PostgreSQL", "SQLite"):
        db = url if kind == "PostgreSQL" else f"sqlite:///{tmp / 'ingest.db'}"
        server = LiveServer(db, log=tmp / "server.log").start()
        try:
            assert server.proc is not None
            caught_up(server.url)
            before = cpu_of(server.proc.pid) + (pg_cpu(pg) if kind == "PostgreSQL" else 0)
            rate = n / post_logs(server.url, items, args.batch, args.clients)
            caught_up(server.url)
            spent = cpu_of(server.proc.pid) + (pg_cpu(pg) if kind == "PostgreSQL" else 0)
        finally:
            server.stop()
        per_log = (spent - before) * 1e6 / n
        rows.append([f"POST /api/v1/action_logs/, {kind} ({args.batch}/request, "
                     f"{args.clients} clients)", round(rate),
                     f"{rate / copy_rate:.2f}" if kind == "PostgreSQL" else "-",
                     round(per_log, 1),
                     f"{copy_cpu / per_log:.2f}" if kind == "PostgreSQL" else "-"])
        print(rows[-1], flush=True)
    return rows


def reports(
    args: argparse.Namespace, pg: TempPostgres, tmp: Path, parts: set[str],
    catch_up: dict[str, float],
) -> tuple[list[list[object]], list[list[object]]]:
    """Parts 2 and 3: reports and the export over loaded installations and logs (and in
    ``catch_up``, the seconds each database's consumers took over the loaded logs)."""
    report_rows: list[list[object]] = []
    export_rows: list[list[object]] = []
    for kind in ("sqlite", "postgresql"):
        db = (f"sqlite:///{tmp / 'reports.db'}" if kind == "sqlite"
              else pg.create_database("reports"))
        LiveServer(db, log=tmp / "server.log").start().stop()
        started = time.perf_counter()
        load(db, args.installations, args.logs)
        print(f"{kind}: loaded in {time.perf_counter() - started:.0f} s", flush=True)
        server = LiveServer(db, log=tmp / "server.log").start()
        try:
            assert server.proc is not None
            pid = server.proc.pid

            def cpu(kind: str = kind, pid: int = pid) -> float:
                return cpu_of(pid) + (pg_cpu(pg) if kind == "postgresql" else 0.0)

            # The consumers go through the loaded logs first (the failure reports; the
            # deployments consumer's counts are part of the dashboard).
            started = time.perf_counter()
            caught_up(server.url, timeout=7200)
            catch_up[kind] = time.perf_counter() - started
            print(f"{kind}: consumers caught up in {catch_up[kind]:.0f} s", flush=True)
            if "reports" in parts:
                with httpx.Client(base_url=server.url, timeout=600) as client:
                    for label, path in (
                        ("report/installations, uncached",
                         "/api/v1/json/report/installations?refresh=1"),
                        ("report/installations, cached",
                         "/api/v1/json/report/installations?release=8.0"),
                        ("/fuel.json (every dashboard report)", "/fuel.json"),
                        ("/fuel.json?release=8.0", "/fuel.json?release=8.0"),
                        ("/fuel (page)", "/fuel"),
                        ("summary", "/api/v1/json/summary"),
                    ):
                        before = cpu()
                        ms = median_ms(client, path)
                        report_rows.append([kind, label, round(ms, 1),
                                            round((cpu() - before) * 1000 / 5, 1)])
                        print(report_rows[-1], flush=True)
            if "export" in parts:
                size, before, peak, took = export_rss(server)
                export_rows.append([kind, f"{size / 2**20:.1f} MiB", f"{took:.1f} s",
                                    f"{before / 1024:.0f} MiB", f"{peak / 1024:.0f} MiB"])
                print(export_rows[-1], flush=True)
        finally:
            server.stop()
    return report_rows, export_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs-ingest", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--installations", type=int, default=100_000)
    parser.add_argument("--logs", type=int, default=1_000_000,
                        help="action logs loaded for the reports (10000000 for the 10M run)")
    parser.add_argument("--parts", default="ingest,reports,export",
                        help="comma-separated: ingest, reports, export")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    unknown = parts - {"ingest", "reports", "export"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    about = machine()
    ingest_rows: list[list[object]] = []
    report_rows: list[list[object]] = []
    export_rows: list[list[object]] = []
    catch_up: dict[str, float] = {}
    pg = TempPostgres(fsync=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-fuel-"))
    try:
        if "ingest" in parts:
            ingest_rows = ingest(args, pg, tmp)
        if parts & {"reports", "export"}:
            report_rows, export_rows = reports(args, pg, tmp, parts, catch_up)
    finally:
        pg.stop()
    body = (
        "## fuel-stats: action-log ingest, reports, exports\n\n"
        f"`python bench/fuelstats.py --logs-ingest {args.logs_ingest} --batch {args.batch} "
        f"--clients {args.clients} --installations {args.installations} --logs {args.logs} "
        f"--parts {args.parts}`"
        f" — {about}\n\n"
        f"Ingest: {args.logs_ingest:,} finished nailgun tasks into an empty "
        "`fuel_action_logs` (fsync=on). COPY gets the rows as the collector would store "
        "them; the endpoint parses and validates each request against the JSON Schema, "
        "sanitizes bodies, hands the items to the group-commit writer (the action-log "
        "sink: insert, dashboard counts) and answers per item after the commit. CPU per "
        "action log: the server process (its failure-report consumer included, waited "
        "for) plus PostgreSQL's processes; for COPY, the client and PostgreSQL. *CPU "
        "ratio* is COPY's CPU per log over the collector's.\n\n"
        + table(["method", "action logs/s", "ratio to COPY", "CPU us/log", "CPU ratio"],
                ingest_rows)
        + f"\n\nReports: {args.installations:,} installations (2 environments of 3 nodes "
        f"each, 2 % filtered) and {args.logs:,} action logs; median of 5, live server, "
        "and the CPU one request used (mean of the 5: the server process and, on "
        "PostgreSQL, the cluster's processes), which waiting for a core on a busy "
        "machine does not inflate. The reports read the counts kept at ingest and by "
        "the deployments consumer (`fuel_counts`). Before the requests, the server's "
        "consumers went through the loaded action logs: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in catch_up.items()) + ".\n\n"
        + table(["database", "request", "ms", "CPU ms"], report_rows)
        + "\n\nExport: `GET /api/v1/csv/clusters` of every installation, streamed; server "
        "RSS before and at its peak during the stream (sampled every 20 ms).\n\n"
        + table(["database", "CSV size", "time", "RSS before", "RSS peak"], export_rows)
    )
    print(body)
    if not args.no_write:
        write_section("fuelstats", body)


if __name__ == "__main__":
    main()
