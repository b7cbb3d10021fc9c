"""Ingest CPU per record, in process: what load on the machine does not inflate.

Drives the ASGI app directly (no sockets, no HTTP parser), ``--concurrency`` requests
at a time, and reports CPU time per record: this process (``time.process_time``: the
event loop, the writer thread, every parse thread) and, on PostgreSQL, the database
server's processes (from ``/proc``). Waiting for a core on a loaded machine stretches
wall time, not CPU time, so these numbers hold on a shared machine.

Three workloads, each against the do-nothing ASGI app (``ceiling.py``) driven the same
way (its CPU is the driver's own share, the floor):

* ``collector``: single-record ``POST /v2/collector`` posts with the 2.3.x client's
  headers and a unique event id (as ``bench/ingest.py`` sends them through wrk);
* ``bulk``: ``POST /api/v1/records/bulk`` NDJSON bodies of ``--batch`` records;

on SQLite (``synchronous=FULL``) and PostgreSQL (a throwaway cluster, ``fsync=on``).
With ``--stages`` the functions of each stage are timed with a per-thread CPU clock
and each run's CPU is split into stages (``bench/stages.py``: parse, envelope,
response, HTTP/guards/asyncio, SQL, commit, writer queue).

    python bench/ingest_cpu.py [--records 20000] [--workloads collector,bulk]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ceiling  # noqa: E402
import proc_cpu  # noqa: E402
import stages  # noqa: E402
from bulk import TID, make_records  # noqa: E402
from common import machine, table, write_section  # noqa: E402

from downlink.app import create_app  # noqa: E402
from downlink.gc_pauses import PauseTimer  # noqa: E402
from downlink.settings import Settings  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - uvicorn's default loop when it is installed
    uvloop = None

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# The 2.3.x client's headers, as bench/load.py's wrk script sends them.
_HEADERS: list[tuple[bytes, bytes]] = [
    (b"host", b"127.0.0.1:8000"),
    (b"record_format_version", b"4"),
    (b"classification", b"org.clearlinux/bench/ingest"),
    (b"severity", b"1"),
    (b"machine_id", b"fc3bbb5a41a7edaeeaaf42a525c58d8c"),
    (b"creation_timestamp", str(int(time.time())).encode()),
    (b"arch", b"x86_64"),
    (b"host_type", b"no_sv_file|no_pn_file|no_pvr_file"),
    (b"build", b'"12"'),
    (b"kernel_version", b"6.18.44-fc-v657"),
    (b"payload_format_version", b"1"),
    (b"system_name", b"debian"),
    (b"board_name", b"no_bn_file|no_bv_file"),
    (b"cpu_model", b"Intel(R) Xeon(R) Processor"),
    (b"bios_version", b"no_bv_file"),
    (b"x-telemetry-tid", TID.encode()),
    (b"content-type", b"application/text"),
    (b"content-length", b"31"),
]
_BODY = b"hello from the ingest benchmark"


@dataclass
class Run:
    """CPU of one measured run."""

    records: int
    wall_s: float
    cpu_s: float
    db_cpu_s: float
    statuses: dict[int, int]
    threads: dict[str, float]
    per_commit: float
    stages: dict[str, float] = field(default_factory=dict)
    # Cyclic garbage collections inside the window: seconds (perf_counter), and how
    # many of each generation.
    gc_s: float = 0.0
    gc_counts: tuple[int, int, int] = (0, 0, 0)

    def per_record_us(self, cpu: float) -> float:
        return cpu / self.records * 1e6 if self.records else 0.0


def _thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by this process's threads, summed by kind."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = _thread_kind(names.get(int(task.name), ""))
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _thread_kind(name: str) -> str:
    if name == "MainThread":
        return "event loop"
    if name.startswith("downlink-writer"):
        return "writer"
    if name.startswith("downlink-parse"):
        return "parse"
    if name.startswith("AnyIO"):
        return "worker threads"
    return "other"


THREAD_KINDS = ("event loop", "writer", "worker threads", "parse", "other")


def _db_cpu(pid: int | None) -> float:
    """CPU seconds used so far by a PostgreSQL postmaster and its children (their
    threads' schedstat: nanoseconds, not the 10 ms ticks of ``/proc/PID/stat``)."""
    if pid is None:
        return 0.0
    return sum(cpu.run_s for cpu in proc_cpu.snapshot(postmasters={"db": pid}).roles().values())


def _collector_scope(n: int, prefix: str) -> dict[str, Any]:
    headers = [*_HEADERS]
    headers.append((b"event_id", f"{prefix}{n:0{32 - len(prefix)}x}".encode()))
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v2/collector", "raw_path": b"/v2/collector", "root_path": "",
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000), "state": {}}


def _bulk_scope(body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/x-ndjson"),
               (b"x-telemetry-tid", TID.encode()),
               (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/api/v1/records/bulk", "raw_path": b"/api/v1/records/bulk",
            "root_path": "", "query_string": b"", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {}}


async def _request(app: App, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would make it; its status and body."""
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a disconnect never comes in this driver
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _drive(app: App, requests: list[tuple[dict[str, Any], bytes]], concurrency: int,
                 statuses: dict[int, int]) -> None:
    queue = iter(requests)

    async def worker() -> None:
        for scope, body in queue:
            status, _ = await _request(app, scope, body)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _lifespan(app: Any) -> AbstractAsyncContextManager[Any]:
    if hasattr(app, "router"):
        return app.router.lifespan_context(app)  # type: ignore[no-any-return]

    class _Nothing:
        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, *_exc: object) -> None:
            return None

    return _Nothing()


async def run(app: Any, requests: list[tuple[dict[str, Any], bytes]], records: int,
              concurrency: int, db_pid: int | None, warm: int,
              timed: Counter[str] | None = None) -> Run:
    """Warm up, then measure ``requests`` (holding ``records`` records in all)."""
    async with _lifespan(app):
        warm_statuses: dict[int, int] = {}
        await _drive(app, requests[:warm], concurrency, warm_statuses)
        measured = requests[warm:]
        statuses: dict[int, int] = {}
        if timed is not None:
            timed.clear()
        # The same collector state at every window's start, whatever the warm-up (or
        # an earlier run in this process) left: a full collection of a heap of about
        # 170,000 objects takes 60-200 ms, 3-10 us a record of a 20,000-record window,
        # and whether one falls inside depends on what came before.
        gc.collect()
        pauses = PauseTimer(CollectorRegistry())
        pauses.install()
        db0, cpu0, wall0 = _db_cpu(db_pid), time.process_time(), time.perf_counter()
        threads0 = _thread_cpu()
        commits0 = _commits(app)
        await _drive(app, measured, concurrency, statuses)
        cpu1, wall1, db1 = time.process_time(), time.perf_counter(), _db_cpu(db_pid)
        threads1 = _thread_cpu()
        commits1 = _commits(app)
        pauses.remove()
        stage_s = dict(timed) if timed is not None else {}
    threads = {k: threads1.get(k, 0.0) - threads0.get(k, 0.0) for k in THREAD_KINDS}
    batches = commits1[1] - commits0[1]
    per_commit = (commits1[0] - commits0[0]) / batches if batches else 0.0
    gc_s, gc_counts = pauses.totals()
    run = Run(records, wall1 - wall0, cpu1 - cpu0, db1 - db0, statuses, threads, per_commit,
              gc_s=gc_s, gc_counts=gc_counts)
    if timed is not None:
        run.stages = stages.split(Counter(stage_s), threads["event loop"], threads["writer"])
    return run


def _commits(app: Any) -> tuple[float, float]:
    """Items committed and batches so far (the writer's histogram), (0, 0) without one."""
    store = getattr(getattr(app, "state", None), "store", None)
    if store is None:
        return 0.0, 0.0
    registry = store.metrics.registry
    return (registry.get_sample_value("downlink_writer_batch_records_sum") or 0.0,
            registry.get_sample_value("downlink_writer_batch_records_count") or 0.0)


def _run_loop(coro: Awaitable[Run]) -> Run:
    """Run on uvloop when installed, as ``downlink serve`` (uvicorn's "auto") does."""
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def collector_requests(n: int, prefix: str) -> list[tuple[dict[str, Any], bytes]]:
    return [(_collector_scope(i, prefix), _BODY) for i in range(n)]


def bulk_requests(n: int, batch: int, prefix: str) -> list[tuple[dict[str, Any], bytes]]:
    recs = make_records(n)
    for rec in recs:
        rec["event_id"] = prefix + rec["event_id"][len(prefix):]
    bodies = [b"\n".join(orjson.dumps(r) for r in recs[i:i + batch])
              for i in range(0, n, batch)]
    return [(_bulk_scope(body), body) for body in bodies]


def _settings(url: str, consumers: bool) -> Settings:
    return Settings(database_url=url, telemetry_ids=(TID,),
                    consumer_poll_s=0.25 if consumers else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000, help="measured per run")
    parser.add_argument("--warm", type=int, default=2000, help="records before measuring")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000, help="records per bulk request")
    parser.add_argument("--workloads", default="collector,bulk")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--consumers", choices=("off", "on", "both"), default="both",
                        help="run the post-ack consumers in the measured process")
    parser.add_argument("--stages", action="store_true",
                        help="time each stage's functions and split each run's CPU by stage")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    about = machine()
    workloads = args.workloads.split(",")
    databases = args.databases.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="downlink-cpu-"))
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    rows: list[list[object]] = []
    stage_rows: list[list[object]] = []
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.consumers]
    try:
        for work in workloads:
            total = args.warm + args.records
            if work == "collector":
                reqs = collector_requests(total, "c0")
                warm = args.warm
            else:
                reqs = bulk_requests(total, args.batch, "b0")
                warm = max(1, args.warm // args.batch)
            base = _run_loop(run(ceiling.app, reqs, args.records, args.concurrency,
                                 None, warm))
            rows.append(_row(work, "do-nothing ASGI", "-", base, None))
            print(table(HEADERS, rows[-1:]), flush=True)
            for db in databases:
                for consumers in modes:
                    name = f"{work}_{db}_{'c' if consumers else 'n'}"
                    if db == "sqlite":
                        url = f"sqlite:///{tmp / f'{name}.db'}"
                        db_pid = None
                    else:
                        assert pg is not None
                        url = pg.create_database(name)
                        db_pid = _postmaster(pg.datadir)
                    app = create_app(_settings(url, consumers))
                    reqs = (collector_requests(total, "5a") if work == "collector"
                            else bulk_requests(total, args.batch, "5a"))
                    if args.stages:
                        with stages.instrument() as timed:
                            res = _run_loop(run(app, reqs, args.records, args.concurrency,
                                                db_pid, warm, timed))
                    else:
                        res = _run_loop(run(app, reqs, args.records, args.concurrency,
                                            db_pid, warm))
                    rows.append(_row(work, f"downlink {db}", "on" if consumers else "off",
                                     res, db_pid))
                    print(table(HEADERS, rows[-1:]), flush=True)
                    if res.stages:
                        stage_rows.append([work, db, "on" if consumers else "off",
                                           *(f"{res.per_record_us(res.stages[s]):.1f}"
                                             for s in stages.STAGES)])
                        print(table(STAGE_HEADERS, stage_rows[-1:]), flush=True)
    finally:
        if pg is not None:
            pg.stop()
    result = table(HEADERS, rows)
    print(result)
    body = (
        "## Ingest CPU per record, in process\n\n"
        f"`python bench/ingest_cpu.py --records {args.records} --concurrency "
        f"{args.concurrency} --batch {args.batch} --workloads {args.workloads}` — {about}\n\n"
        "The ASGI app called directly (no sockets, no HTTP parser), "
        f"{args.concurrency} requests at a time, after {args.warm} warm-up records. CPU "
        "time, which waiting for a core does not inflate: this process (event loop, "
        "writer thread, parse threads) and PostgreSQL's processes. The do-nothing app "
        "row is the driver's own cost. Every answer is counted by status.\n\n" + result
    )
    if stage_rows:
        stages_table = table(STAGE_HEADERS, stage_rows)
        print(stages_table)
        body += ("\n\nCPU us per record by stage (`--stages`: each stage's functions "
                 "timed with a per-thread CPU clock, about 1 us per timed call included; "
                 "`bench/stages.py` says what each stage holds):\n\n" + stages_table)
    if not args.no_write:
        write_section("ingest-cpu", body)


HEADERS = ["workload", "server", "consumers", "CPU us/record", *THREAD_KINDS,
           "database", "wall records/s", "answers"]
STAGE_HEADERS = ["workload", "database", "consumers", *stages.STAGES]


def _row(work: str, server: str, consumers: str, res: Run, db_pid: int | None) -> list[object]:
    return [work, server, consumers, f"{res.per_record_us(res.cpu_s):.1f}",
            *(f"{res.per_record_us(res.threads.get(k, 0.0)):.1f}" for k in THREAD_KINDS),
            f"{res.per_record_us(res.db_cpu_s):.1f}" if db_pid else "-",
            f"{res.per_commit:.1f}" if res.per_commit else "-",
            round(res.records / res.wall_s), _answers(res)]


def _answers(res: Run) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(res.statuses.items()))


def _postmaster(datadir: Path) -> int:
    return int((datadir / "postmaster.pid").read_text().split()[0])


if __name__ == "__main__":
    main()
