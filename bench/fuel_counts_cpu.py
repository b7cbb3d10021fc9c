"""CPU time of fuel-stats' write sinks per transaction, in process: what keeping the
dashboard's counts costs a structure post and a batch of action logs.

Each structure upsert (half new installations, half updated ones with another
environment) and each batch of ``--batch`` action logs is one committed transaction
through the real sinks (``sink.STRUCTURES`` / ``sink.ACTION_LOGS``), on SQLite
(``synchronous=FULL``) and on a throwaway PostgreSQL (``fsync=on``). Reported: CPU
microseconds per transaction of this process (``time.process_time``) and, on
PostgreSQL, of its backend (``/proc``), without a recount and while a ``fuel_recount``
job is active halfway through the installations (the writers then read its cursor and
leave the installations beyond it to it). CPU time, not wall time: a loaded machine
inflates the second far more. Prints a table; writes no file.

    PYTHONPATH=src python bench/fuel_counts_cpu.py [--posts 2000] [--batch 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, update

from downlink.settings import Settings
from downlink.sources.fuelstats.sink import ACTION_LOGS, STRUCTURES, StructureRow, structure_item
from downlink.sources.fuelstats.tables import installations
from downlink.store import jobs
from downlink.store.database import Store
from downlink.store.envelope import Envelope
from downlink.store.tables import jobs as jobs_table
from downlink.testing.postgres import TempPostgres

DAY = 86400.0
TICKS = os.sysconf("SC_CLK_TCK")


def structure(uid: str, envs: int) -> dict[str, Any]:
    return {"master_node_uid": uid, "clusters_num": envs,
            "fuel_release": {"release": "9.0", "build_id": "b"},
            "clusters": [{"id": i + 1, "status": "operational", "nodes_num": 3,
                          "release": {"os": "Ubuntu", "version": "mitaka-9.0"},
                          "attributes": {"libvirt_type": "kvm"},
                          "nodes": [{"id": 10 * i + k, "roles": ["compute"]}
                                    for k in range(3)]}
                         for i in range(envs)]}


def log_row(uid: str, ext: int) -> dict[str, Any]:
    return {"master_node_uid": uid, "external_id": ext, "body": {},
            "action_type": "nailgun_task", "action_name": "verify_networks",
            "cluster_id": 1, "ended_status": "ready", "duration_s": 10.0, "top_level": True,
            "ts_reception": 17000 * DAY + ext}


def backend_pid(conn: Connection) -> int | None:
    """The PostgreSQL backend of this connection (None on SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    conn.commit()
    return pid


def backend_cpu(pid: int | None) -> float:
    """CPU seconds of a PostgreSQL backend so far (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(engine: Engine, posts: int, batch: int, offset: int) -> tuple[float, ...]:
    """(structure us, structure backend us, logs us, logs backend us) per transaction."""
    uids = [f"bench-{offset}-{i}" for i in range(posts // 2)]
    steps: list[Callable[[Connection], Any]] = []
    for i, uid in enumerate(uids + uids):  # new, then updated with another environment
        item = structure_item(StructureRow(uid, structure(uid, 1 + i // len(uids)), "9.0",
                                           False), 17000 * DAY + i)
        steps.append(lambda conn, item=item: STRUCTURES.write(conn, [item]))
    log_steps: list[Callable[[Connection], Any]] = []
    for i in range(posts):
        items = [Envelope(log_row(uids[i % len(uids)], i * batch + k)) for k in range(batch)]
        log_steps.append(lambda conn, items=items: ACTION_LOGS.write(conn, items))
    found: list[float] = []
    with engine.connect() as conn:
        pid = backend_pid(conn)
        for part in (steps, log_steps):
            server0, cpu0 = backend_cpu(pid), time.process_time()
            for step in part:
                with conn.begin():
                    step(conn)
            cpu, server = time.process_time() - cpu0, backend_cpu(pid) - server0
            found += [cpu / len(part) * 1e6, server / len(part) * 1e6]
    return tuple(found)


def run(url: str, args: argparse.Namespace) -> list[list[str]]:
    store = Store(Settings(database_url=url))
    store.migrate()
    engine = store.write_engine
    rows = []
    try:
        for recount in (False, True):
            if recount:
                with engine.begin() as conn:  # active, halfway through the installations
                    job = jobs.enqueue(conn, "fuel_recount")
                    half = conn.execute(select(func.max(installations.c.id) / 2)).scalar_one()
                    conn.execute(update(jobs_table).where(jobs_table.c.id == job)
                                 .values(cursor=int(half)))
            results = [measure(engine, args.posts, args.batch, run * 10 + recount)
                       for run in range(args.runs)]
            medians = [statistics.median(r[i] for r in results) for i in range(4)]
            rows.append([engine.dialect.name, "active" if recount else "none",
                         *(f"{v:.0f}" for v in medians)])
    finally:
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += run(f"sqlite:///{tmp}/bench.db", args)
        pg = TempPostgres(fsync=True).start()
        try:
            rows += run(pg.create_database("bench"), args)
        finally:
            pg.stop()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.posts} transactions each, "
          f"median of {args.runs}; CPU us per transaction", file=sys.stderr)
    print("database | recount | structure | structure (server) | "
          f"{args.batch} logs | {args.batch} logs (server)")
    for row in rows:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
