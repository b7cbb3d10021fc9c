"""Shared helpers of the benchmarks: tables, machine facts, docs/performance.md sections.

Each benchmark owns one section of ``docs/performance.md`` between the markers
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` and replaces only that section, so
benchmarks (and people) can add their own sections without clobbering each other.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"

HEADER = """# Performance

Measured facts about Downlink's speed and footprint. Every number below comes from a
script in `bench/`; each runs with one command and rewrites only its own section here:

- `python bench/ingest.py`: single-record `/v2/collector` posts/s and p50/p99 latency on
  SQLite and PostgreSQL with 1, 2 and 4 workers, against a do-nothing ASGI app (the
  ceiling) driven by the same load generator.
- `python bench/bulk.py`: `POST /api/v1/records/bulk` records/s against PostgreSQL
  `COPY` into the same table.
- `python bench/ingest_cpu.py`: CPU time per record of collector and bulk posts, the
  ASGI app called in process, by thread and (`--stages`) by stage; machine load does
  not inflate it the way it does wall time.
- `python bench/ooni_submit_cpu.py`: the same for OONI's `POST /report/{report_id}`
  with a 50 KB body, split by stage (body read, parse, checks, stored bytes, uid hash,
  answer, HTTP and routing, durable write).
- `python bench/queries.py`: `/api/records` latency at 100k and 1M records (`--sizes`
  for 10M), SQLite and PostgreSQL.
- `python bench/memory.py`: server RSS sampled during sustained load (default 10
  minutes, `--minutes`); with `--exports`, the peak RSS of answering `/api/records`
  and `downlink export` over records of 4 MiB.
- `python bench/big_bodies.py`: `/-/health` latency while 8 MB hostile and bulk
  bodies are posted, against the idle server.

Requirements: the `postgresql` server binaries (initdb, pg_ctl) and `wrk` (Debian
package `wrk`) on the PATH; everything runs on 127.0.0.1. PostgreSQL is a throwaway
cluster started with `fsync=on` and `synchronous_commit=on`, SQLite runs with
`synchronous=FULL`, so every success answer below is a durable commit.
"""


def machine() -> str:
    """One paragraph describing where and with what the numbers were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pg = subprocess.run(["postgres", "--version"], capture_output=True, text=True,
                            check=False).stdout.strip()
    except OSError:
        from downlink.testing.postgres import find_bindir

        pg = subprocess.run([str(find_bindir() / "postgres"), "--version"],
                            capture_output=True, text=True, check=False).stdout.strip()
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("downlink", "uvicorn", "fastapi",
                                                        "sqlalchemy", "psycopg")
    )
    load = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {versions}, "
        f"SQLite {sqlite3.sqlite_version}, {pg}. Load average at start "
        f"{load[0]:.1f} (a shared machine: other work ran at the same time, so the numbers "
        "are lower bounds and vary between runs)."
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; also printed to the terminal by the caller."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}" if value >= 100 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/performance.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before = text.split(start, 1)[0]
        after = text.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"wrote section {name!r} of {DOC.relative_to(ROOT)}")
