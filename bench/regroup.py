"""The "never guilty" regroup (a revision of the crash consumer): its cost per crash
record against reading and parsing the same records alone, in the same run.

    python bench/regroup.py                                          # 200,000 records, both
    python bench/regroup.py --records 20000 --db sqlite --no-write   # quick look

N generated records are loaded with their derived data (``bench/dashboards.py``'s fast
loader: crash groups and rollups as the consumers derive them). Then, on the same
database:

* **baseline**: every backtrace record is read in id order, 2,000 at a time as the job
  reads them, and its guilty frame found with the edited list (``find_guilty``): the
  reading and parsing any regroup needs, nothing written;
* **job**: the frame with the most crashes is marked never guilty as the blacklist
  POST does (edit and ``request_regroup`` in one transaction), and the job's steps
  run in this process as the server's job runner runs them (``run_step`` through
  ``Store.admin_write``: on SQLite on the writer thread, in line with the record
  batches) until it is done: each regroups a batch and moves the records whose group
  changed between the groups' rollups. After every step the crash rollups must still
  count every grouped record once (checked outside the timings: no group is ever
  emptied or half rebuilt).
* **posts**: meanwhile a collector posts one record every 50 ms through the same
  writer (``Store.write``, what ``/v2/collector`` calls); each post's wait until its
  record is committed is timed. On SQLite a post waits for the step holding the
  write lock; the records it adds are past the crash consumer's cursor, so the job
  does not walk them.

Reported: CPU seconds (the baseline's in this process, ``time.process_time``; the
job's on the thread running each step, ``time.thread_time``, so the posts' own work
is not in it; on PostgreSQL the server's own work is in neither, so wall seconds are
given too), the ratio of the job's to the baseline's, the records that moved, the
steps and their rows (fewest-most), the longest step (what the live crash consumer,
and on SQLite ingestion, wait for at most) and the median and longest post. The
section ``regroup`` of docs/performance.md is replaced with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from dashboards import fast_load  # noqa: E402
from sqlalchemy import Connection, func, select  # noqa: E402

from downlink.pipeline import reprocess  # noqa: E402
from downlink.pipeline.consumers import bind  # noqa: E402
from downlink.pipeline.jobkinds import run_step  # noqa: E402
from downlink.pipeline.jobrunner import STALE_AFTER_S  # noqa: E402
from downlink.settings import Settings  # noqa: E402
from downlink.sources.clearlinux.backtrace import BACKTRACE_CLASSES, find_guilty  # noqa: E402
from downlink.sources.clearlinux.crashes import add_to_blacklist, load_blacklist  # noqa: E402
from downlink.sources.clearlinux.regroup import KIND, request_regroup  # noqa: E402
from downlink.sources.clearlinux.tables import guilty, rollup_guilty  # noqa: E402
from downlink.store import jobs  # noqa: E402
from downlink.store.database import Store  # noqa: E402
from downlink.store.tables import records  # noqa: E402
from downlink.testing.generate import RecordGenerator  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

BATCH = 2000
POST_EVERY_S = 0.05


def _top_frame(conn: Connection) -> tuple[str, str]:
    g = rollup_guilty.c
    gid, _n = conn.execute(
        select(g.guilty_id, func.sum(g.count)).group_by(g.guilty_id)
        .order_by(func.sum(g.count).desc()).limit(1)
    ).one()
    function, module = conn.execute(
        select(guilty.c.function, guilty.c.module).where(guilty.c.id == gid)
    ).one()
    return str(function), str(module)


def _parse_all(conn: Connection, blacklist: set[tuple[str, str]]) -> int:
    """The baseline: read every backtrace record by id in batches, find its frame."""
    last, seen = 0, 0
    while True:
        rows = conn.execute(
            select(records)
            .where(records.c.classification.in_(BACKTRACE_CLASSES), records.c.id > last)
            .order_by(records.c.id).limit(BATCH)
        ).mappings().all()
        for row in rows:
            find_guilty(row["payload"] or "", blacklist)
        seen += len(rows)
        if len(rows) < BATCH:
            return seen
        last = int(rows[-1]["id"])


def _counted(conn: Connection) -> tuple[int, int]:
    counted = conn.execute(select(func.coalesce(func.sum(rollup_guilty.c.count), 0))).scalar_one()
    r = records.c
    grouped = conn.execute(
        select(func.count()).where(r.guilty_id.is_not(None), r.sender_flagged.is_not(True))
    ).scalar_one()
    return int(counted), int(grouped)


class _Steps:
    """The job's steps, each timed on the thread that runs it (inside its transaction:
    the commit is not in the figures)."""

    def __init__(self, kind: Any, job_id: int, owner: str) -> None:
        self.kind, self.job_id, self.owner = kind, job_id, owner
        self.cpu = self.wall = self.longest = 0.0

    def __call__(self, conn: Connection) -> bool:
        cpu, wall = time.thread_time(), time.perf_counter()
        more = bool(run_step(conn, self.kind, self.job_id, self.owner))
        took = time.perf_counter() - wall
        self.cpu += time.thread_time() - cpu
        self.wall += took
        self.longest = max(self.longest, took)
        return more


async def _post_while(store: Store, running: asyncio.Event, seed: int) -> list[float]:
    """Post one record every POST_EVERY_S while ``running`` is set; each post's wait."""
    gen = RecordGenerator(seed=seed + 1000, machines=100, days=1)
    waits: list[float] = []
    while running.is_set():
        row = next(gen.rows(1))
        started = time.perf_counter()
        await store.write([row])
        waits.append(time.perf_counter() - started)
        await asyncio.sleep(POST_EVERY_S)
    return waits


async def _regroup(store: Store, steps: _Steps, seed: int) -> dict[str, Any]:
    """Run the job's steps as the job runner does while a collector posts."""
    running = asyncio.Event()
    running.set()
    posting = asyncio.create_task(_post_while(store, running, seed))
    sizes: list[int] = []
    done = 0
    try:
        n = 0
        while True:
            more = await store.admin_write(steps)
            n += 1
            counted, grouped = await store.read_primary(_counted)
            assert counted == grouped, (counted, grouped)
            job = await store.read_primary(lambda c: jobs.get(c, steps.job_id))
            assert job is not None
            if int(job["done"]) > done:
                sizes.append(int(job["done"]) - done)
                done = int(job["done"])
            if not more:
                break
    finally:
        running.clear()
        waits = await posting
    return {"steps": n, "sizes": sizes, "waits": waits}


def run(url: str, seed: int = 1) -> dict[str, Any]:
    """Baseline, then the job with posts, on one loaded database."""
    store = Store(Settings(database_url=url))
    try:
        frame = store.run(_top_frame)
        blacklist = store.run(load_blacklist) | {frame}
        cpu, wall = time.process_time(), time.perf_counter()
        crashes = store.run(_parse_all, blacklist)
        base_cpu, base_wall = time.process_time() - cpu, time.perf_counter() - wall

        def edit(conn: Connection) -> int:
            add_to_blacklist(conn, [frame])
            return request_regroup(conn)

        job_id = store.run_write(edit)
        kinds = reprocess.job_kinds(bind(store.settings.registry))
        kind = next(k for k in kinds if k.kind == KIND)
        owner = jobs.new_owner()
        assert store.run_write(lambda c: jobs.claim(c, (KIND,), owner, STALE_AFTER_S))
        store.start(run_migrations=False)  # the writer thread, as in a server
        steps = _Steps(kind, job_id, owner)
        ran = asyncio.run(_regroup(store, steps, seed))
        done = store.run(lambda c: jobs.get(c, job_id))
        assert done is not None and done["state"] == "done"
        waits = ran["waits"] or [0.0]
        sizes = ran["sizes"] or [0]
        return {
            "crashes": crashes,
            "moved": int(done["changed"]),
            "steps": ran["steps"],
            "rows": f"{min(sizes):,}-{max(sizes):,}",
            "base_cpu": base_cpu,
            "base_wall": base_wall,
            "job_cpu": steps.cpu,
            "job_wall": steps.wall,
            "longest_ms": steps.longest * 1000,
            "posts": len(ran["waits"]),
            "post_median_ms": statistics.median(waits) * 1000,
            "post_max_ms": max(waits) * 1000,
            "frame": f"{frame[0]} [{frame[1]}]",
        }
    finally:
        store.close()


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    args = ap.parse_args()
    about = machine()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="downlink-bench-") as tmp:
        for kind in kinds:
            pg: TempPostgres | None = None
            if kind == "sqlite":
                url = f"sqlite:///{tmp}/regroup.db"
            else:
                pg = TempPostgres().start()
                url = pg.create_database("regroup")
            try:
                print(f"{kind}: loading {args.records:,} records", flush=True)
                fast_load(url, args.records, args.seed)
                r = run(url, args.seed)
            finally:
                if pg is not None:
                    pg.stop()
            print(f"{kind}: {r}", flush=True)
            rows.append([
                kind, f"{r['crashes']:,}", f"{r['moved']:,}", r["steps"],
                r["base_cpu"], r["job_cpu"], f"{r['job_cpu'] / max(r['base_cpu'], 1e-9):.2f}",
                r["base_wall"], r["job_wall"], f"{r['longest_ms']:.0f}", r["rows"],
                r["posts"], f"{r['post_median_ms']:.0f}", f"{r['post_max_ms']:.0f}",
            ])
    headers = ["database", "backtrace records", "moved", "steps", "baseline CPU s",
               "job CPU s", "ratio", "baseline wall s", "job wall s", "longest step ms",
               "rows per step", "posts", "post median ms", "longest post ms"]
    body = "\n".join([
        f"## Never-guilty regroup, {args.records:,} records",
        "",
        f"`python bench/regroup.py {' '.join(sys.argv[1:])}`: {about}",
        "",
        "The regroup is a revision of the crash consumer (docs/architecture.md): each step "
        "regroups a batch of backtrace records and moves those whose group changed between "
        "the groups' rollups in one transaction. Baseline: reading and parsing the same "
        "records alone. Job CPU is the steps' own threads' (on PostgreSQL the server's work "
        "is only in the wall time); after every step the rollups counted every grouped "
        "record once. Meanwhile a collector posted one record every 50 ms through the "
        "writer: on SQLite a post waits for the step holding the write lock.",
        "",
        table(headers, rows),
    ])
    print(body)
    if not args.no_write:
        write_section("regroup", body)


if __name__ == "__main__":
    main()
