"""OONI submission CPU per measurement, in process, split by stage.

Drives the ASGI app directly (no sockets, no HTTP parser; ``bench/ingest_cpu.py``'s
driver), ``--concurrency`` ``POST /report/{report_id}`` at a time, each with the same
~50 KB web_connectivity body as ``bench/ooni.py``, and reports CPU time per submission:
this process (``time.process_time``: the event loop, the writer thread, worker threads)
and, on PostgreSQL, the database server's processes. Waiting for a core on a loaded
machine stretches wall time, not CPU time, so these figures hold on a shared machine.

The do-nothing ASGI app (``ceiling.py``) driven the same way is the driver's own cost.
The fastpath consumer is off by default (the request path alone); ``--consumers on``
runs it in the measured process too (its scoring is then part of the CPU).

Stages (each one's functions timed with the calling thread's CPU clock; the rest of a
thread is named for what runs there):

* ``body read``: reading the request body (``read_body``);
* ``decode + parse``: zstd when compressed, then parsing the JSON body;
* ``checks``: the report id and the measurement's metadata (checks 1-4 and 7-9);
* ``stored bytes``: the bytes stored (the body with ``is_verified``);
* ``uid hash``: the measurement_uid (SHA-512 of the stored bytes);
* ``answer``: the JSON answer;
* ``HTTP, routing, asyncio``: the rest of the event loop's thread (the application's
  layers and router, the guards, queueing the row and waking up again);
* ``durable write``: the threads that insert and commit (SQLite's writer thread,
  PostgreSQL's worker threads), plus the database server's processes on PostgreSQL.

    python bench/ooni_submit_cpu.py [--submissions 4000] [--concurrency 32]
                                    [--databases sqlite,postgresql] [--consumers off]
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ceiling  # noqa: E402
from common import machine, table, write_section  # noqa: E402
from ingest_cpu import Run, _postmaster, _run_loop, run  # noqa: E402
from ooni import submission_body  # noqa: E402

from downlink.app import create_app  # noqa: E402
from downlink.settings import Settings  # noqa: E402
from downlink.sources.ooni import reportid  # noqa: E402
from downlink.testing.postgres import TempPostgres  # noqa: E402

STAGES = ("body read", "decode + parse", "checks", "stored bytes", "uid hash", "answer",
          "HTTP, routing, asyncio", "durable write")

# (module, attribute, stage): the functions of each stage, wherever the code keeps them.
_TARGETS = (
    ("downlink.sources.ooni.probe_services", "read_body", "body read"),
    ("downlink.sources.ooni.probe_services", "receive_body", "body read"),
    ("downlink.sources.ooni.submission", "decode", "decode + parse"),
    ("downlink.sources.ooni.submission", "parse_body", "decode + parse"),
    ("downlink.sources.ooni.reportid", "parse", "checks"),
    ("downlink.sources.ooni.submission", "metadata_of", "checks"),
    ("downlink.sources.ooni.submission", "check_consistent", "checks"),
    ("downlink.sources.ooni.submission", "check_metadata", "checks"),
    ("downlink.sources.ooni.submission", "stored_bytes", "stored bytes"),
    ("downlink.sources.ooni.submission", "stored_as_received", "stored bytes"),
    ("downlink.sources.ooni.submission", "mint_uid", "uid hash"),
    ("downlink.sources.ooni.probe_services", "_json", "answer"),
    ("downlink.sources.ooni.probe_services", "_answer", "answer"),
)
_spent: Counter[str] = Counter()


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` timed with the thread's CPU clock; coroutine functions too (the driver's
    ``receive`` never suspends, so reading the body runs without a switch)."""
    if inspect.iscoroutinefunction(fn):
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                _spent[label] += time.thread_time() - started

        return timed_async

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[label] += time.thread_time() - started

    return timed


@contextmanager
def instrument() -> Iterator[Counter[str]]:
    """Wrap the stage functions while the context lasts (the counter holds CPU s)."""
    import importlib

    saved = []
    for module_name, attr, label in _TARGETS:
        module = importlib.import_module(module_name)
        if hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, _timed(label, getattr(module, attr)))
    _spent.clear()
    try:
        yield _spent
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)


def report_id(body: bytes) -> str:
    """A fresh report id for the body's measurement (as ``POST /report`` mints one)."""
    msm = orjson.loads(body)["content"]
    return reportid.mint(reportid.OpenReport(
        probe_cc=msm["probe_cc"], probe_asn=int(msm["probe_asn"][2:]),
        test_name=msm["test_name"], data_format_version="0.2.0", format="json",
        software_name="bench", software_version="1", test_start_time="2025-01-01 00:00:00",
        test_version="0.4.3",
    ), "1")


def requests(n: int, body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    path = "/report/" + report_id(body)
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
             "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
             "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8000)}
    return [({**scope, "state": {}}, body) for _ in range(n)]


def stage_split(res: Run, spent: Counter[str]) -> dict[str, float]:
    """CPU seconds per stage: the timed functions, the rest of the event loop, and the
    write threads with the database server."""
    out = {s: spent.get(s, 0.0) for s in STAGES[:6]}
    out["HTTP, routing, asyncio"] = max(0.0, res.threads["event loop"] - sum(out.values()))
    out["durable write"] = (res.threads["writer"] + res.threads["worker threads"]
                            + res.db_cpu_s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=4000, help="measured per run")
    parser.add_argument("--warm", type=int, default=400, help="submissions before measuring")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--consumers", choices=("off", "on"), default="off")
    parser.add_argument("--label", default="", help="a word for the table (before/after)")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    about = machine()
    body = submission_body()
    total = args.warm + args.submissions
    tmp = Path(tempfile.mkdtemp(prefix="downlink-ooni-cpu-"))
    databases = args.databases.split(",")
    pg = TempPostgres(fsync=True).start() if "postgresql" in databases else None
    rows: list[list[object]] = []
    stage_rows: list[list[object]] = []
    try:
        base = _run_loop(run(ceiling.app, requests(total, body), args.submissions,
                             args.concurrency, None, args.warm))
        rows.append(_row("do-nothing ASGI", base, None))
        print(table(HEADERS, rows[-1:]), flush=True)
        for db in databases:
            if db == "sqlite":
                url, db_pid = f"sqlite:///{tmp / 'ooni.db'}", None
            else:
                assert pg is not None
                url = pg.create_database("ooni_cpu")
                db_pid = _postmaster(pg.datadir)
            settings = Settings(database_url=url,
                                consumer_poll_s=0.25 if args.consumers == "on" else 0.0)
            app = create_app(settings)
            with instrument() as spent:
                res = _run_loop(run(app, requests(total, body), args.submissions,
                                    args.concurrency, db_pid, args.warm, spent))
                split = stage_split(res, spent)
            rows.append(_row(f"downlink {db}", res, db_pid))
            print(table(HEADERS, rows[-1:]), flush=True)
            stage_rows.append([db, *(f"{res.per_record_us(split[s]):.1f}" for s in STAGES)])
            print(table(STAGE_HEADERS, stage_rows[-1:]), flush=True)
    finally:
        if pg is not None:
            pg.stop()
    load = os.getloadavg()[0]
    result = table(HEADERS, rows)
    stages_table = table(STAGE_HEADERS, stage_rows)
    print(result)
    print(stages_table)
    print(f"load average at the end: {load:.1f}")
    body_text = (
        "## OONI submissions: CPU per measurement, in process"
        + (f" ({args.label})" if args.label else "") + "\n\n"
        f"`python bench/ooni_submit_cpu.py --submissions {args.submissions} --concurrency "
        f"{args.concurrency} --consumers {args.consumers}` — {about} Load average at the "
        f"end {load:.1f}.\n\n"
        f"`POST /report/{{report_id}}` with a {len(body):,}-byte web_connectivity body, the "
        f"ASGI app called directly, {args.concurrency} at a time, after {args.warm} "
        "warm-up submissions; every answer counted by status (200 is a committed row). "
        "CPU time, which waiting for a core does not inflate.\n\n" + result
        + "\n\nCPU us per submission by stage:\n\n" + stages_table
    )
    if not args.no_write:
        write_section("ooni-submit-cpu", body_text)


HEADERS = ["server", "CPU us/msm", "event loop", "writer", "worker threads", "database",
           "wall msm/s", "answers"]
STAGE_HEADERS = ["database", *STAGES]


def _row(server: str, res: Run, db_pid: int | None) -> list[object]:
    return [server, f"{res.per_record_us(res.cpu_s + res.db_cpu_s):.1f}",
            *(f"{res.per_record_us(res.threads.get(k, 0.0)):.1f}"
              for k in ("event loop", "writer", "worker threads")),
            f"{res.per_record_us(res.db_cpu_s):.1f}" if db_pid else "-",
            round(res.records / res.wall_s),
            ", ".join(f"{c} x {s}" for s, c in sorted(res.statuses.items()))]


if __name__ == "__main__":
    main()
