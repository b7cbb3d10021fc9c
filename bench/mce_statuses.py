"""The MCE and Thermal reads when nearly every machine check has its own STATUS.

    python bench/mce_statuses.py --records 500000 --json after.json --before before.json

A status is sender-controlled text (the last 8 hex digits before ``MCGSTATUS``): the
ClickHouse scale bench's payloads carry a random 64-bit STATUS, and so can a hostile
sender's. This loads ``--records`` generated records (``bench/dashboards.py``'s fast
load: the Clear Linux consumers' own crash grouping and rollups on 100,000-record
batches) whose machine checks (7.5 % of the generator's records; the scale bench's
are 4 %) have a random STATUS with probability
``--random-mce-status`` (1.0: all of them), then calls the SQL store's reads of the
views in process (:func:`~downlink.sources.clearlinux.queries.mce.mce_summary`,
:func:`~downlink.sources.clearlinux.queries.mce.thermal_weekly`): the first call, then
the median of ``--runs``, wall time and CPU time (this process, and on PostgreSQL the
backend's, read from ``/proc``: waiting for a core on a shared machine does not
inflate it). The statements one call runs are captured and profiled: ``EXPLAIN
(ANALYZE, BUFFERS)`` on PostgreSQL, ``EXPLAIN QUERY PLAN`` plus the statement's own time
on SQLite, written to ``--explain``.

``--json`` saves the timings; ``--before FILE`` (the JSON of a run on the earlier code)
puts them beside this run's in the section ``mce-statuses`` of docs/performance.md
(``--no-write``: leave it alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, func, select

from downlink.sources.clearlinux.mce import MCE_CLASSES
from downlink.sources.clearlinux.queries.mce import mce_summary, thermal_weekly
from downlink.store.engine import _normalise
from downlink.store.queries.period import Period, day_number
from downlink.testing.postgres import TempPostgres

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_section  # noqa: E402
from dashboards import DAYS, fast_load  # noqa: E402

SECTION = "mce-statuses"
TICK = os.sysconf("SC_CLK_TCK")

Read = Callable[[Connection], Any]


def _backend_cpu(conn: Connection) -> Callable[[], float]:
    """CPU seconds used so far by this connection's PostgreSQL backend (0 on SQLite)."""
    if conn.dialect.name != "postgresql":
        return lambda: 0.0
    pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    stat = Path(f"/proc/{pid}/stat")

    def used() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    return used


def _views(conn: Connection) -> list[tuple[str, Read]]:
    today = datetime.now(UTC).date()
    since = today - timedelta(days=90)
    quarter = Period(day_number(since), day_number(today))
    month = Period(day_number(today - timedelta(days=30)), day_number(today))
    from downlink.sources.clearlinux.tables import rollup_build_daily as b

    top_build = conn.execute(
        select(b.c.build)
        .where(b.c.classification.in_(MCE_CLASSES))
        .group_by(b.c.build)
        .order_by(func.sum(b.c.count).desc())
        .limit(1)
    ).scalar_one()
    return [
        ("/mce, 90 days", lambda c: mce_summary(c, quarter)),
        ("/mce, last 30 days", lambda c: mce_summary(c, month)),
        (f"/mce, 90 days, build {top_build}", lambda c: mce_summary(c, quarter, build=top_build)),
        ("/thermal, 5 weeks", lambda c: thermal_weekly(c, Period.past(35))),
    ]


def _profile(conn: Connection, read: Read) -> list[str]:
    """Each statement ``read`` runs, with its plan and time."""
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        read(conn)
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    out: list[str] = []
    for statement, parameters in seen:
        out.append(statement.strip())
        if conn.dialect.name == "postgresql":
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            out += [str(r[0]) for r in plan]
        else:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            out += [f"  {r[-1]}" for r in plan]
            started = time.perf_counter()
            rows = conn.exec_driver_sql(statement, parameters).fetchall()
            ms = (time.perf_counter() - started) * 1000
            out.append(f"  {len(rows):,} rows in {ms:.1f} ms")
        out.append("")
    return out


def time_reads(url: str, runs: int) -> tuple[dict[str, dict[str, float]], list[str], int]:
    """Timings of every view, the profile of each, and the number of status rows."""
    engine = create_engine(_normalise(url))
    timings: dict[str, dict[str, float]] = {}
    profile: list[str] = []
    try:
        with engine.connect() as conn:
            backend = _backend_cpu(conn)
            statuses = len(mce_summary(conn, Period.past(DAYS + 2))["by_status"])
            for what, read in _views(conn):
                walls: list[float] = []
                cpus: list[float] = []
                for _ in range(runs + 1):
                    cpu0, wall0 = time.process_time() + backend(), time.perf_counter()
                    read(conn)
                    walls.append((time.perf_counter() - wall0) * 1000)
                    cpus.append((time.process_time() + backend() - cpu0) * 1000)
                timings[what] = {
                    "first_ms": walls[0],
                    "median_ms": statistics.median(walls[1:]),
                    "cpu_ms": statistics.median(cpus[1:]),
                }
                print(f"  {what}: first {walls[0]:.1f} ms, median {timings[what]['median_ms']:.1f}"
                      f" ms, CPU {timings[what]['cpu_ms']:.1f} ms", flush=True)
                profile += [f"== {what}", *_profile(conn, read)]
    finally:
        engine.dispose()
    return timings, profile, statuses


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--random-mce-status", type=float, default=1.0)
    ap.add_argument("--json", type=Path, help="save this run's timings here")
    ap.add_argument("--before", type=Path, help="the timings of a run on the earlier code")
    ap.add_argument("--explain", type=Path, help="write the statements' plans here")
    ap.add_argument("--label", default="this code", help="what this run measured")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    ap.add_argument("--section", default=SECTION)
    ap.add_argument("--write-from", type=Path, metavar="JSON",
                    help="write the section from a run saved with --json, loading nothing")
    args = ap.parse_args()
    if args.write_from:
        now = json.loads(args.write_from.read_text())
        before = json.loads(args.before.read_text()) if args.before else None
        write_section(args.section, _section(args, now, before))
        return
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    about = machine()
    results: dict[str, Any] = {"label": args.label, "about": about, "kinds": {},
                               "command": " ".join(["python bench/mce_statuses.py",
                                                    *sys.argv[1:]])}
    profile: list[str] = []
    with tempfile.TemporaryDirectory(prefix="downlink-bench-") as tmp:
        for kind in kinds:
            pg: TempPostgres | None = None
            if kind == "sqlite":
                url = f"sqlite:///{tmp}/mce.db"
            else:
                pg = TempPostgres().start()
                url = pg.create_database("mce")
            try:
                print(f"{kind}: loading {args.records:,} records", flush=True)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                rate = fast_load(url, args.records, args.seed,
                                 random_mce_status=args.random_mce_status)
                load_s = time.perf_counter() - wall0
                print(f"{kind}: {rate:,.0f} records/s ({load_s:.0f} s, this process's CPU "
                      f"{time.process_time() - cpu0:.0f} s); timing the reads", flush=True)
                timings, plans, statuses = time_reads(url, args.runs)
                results["kinds"][kind] = {"timings": timings, "statuses": statuses,
                                          "load_s": load_s}
                profile += [f"#### {kind}", *plans]
            finally:
                if pg is not None:
                    pg.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.explain:
        args.explain.write_text("\n".join(profile) + "\n")
    if args.no_write:
        return
    before = json.loads(args.before.read_text()) if args.before else None
    write_section(args.section, _section(args, results, before))


def _section(args: argparse.Namespace, now: dict[str, Any], before: dict[str, Any] | None) -> str:
    runs = [r for r in (before, now) if r is not None]
    lines = [
        f"## MCE with a random STATUS on every machine check, {args.records:,} records",
        "",
        f"`{now.get('command', 'python bench/mce_statuses.py')}`: {args.records:,} generated "
        f"records over {DAYS} days (7.5 % machine checks, a share of "
        f"{args.random_mce_status:g} of them with a random 64-bit STATUS), loaded with the "
        "consumers' own rollups; the SQL store's reads of the views called in process: "
        f"first call, then median of {args.runs}, wall ms and (in brackets) CPU ms of this "
        "process and the PostgreSQL backend.",
        "",
    ]
    for r in runs:
        lines.append(f"- {r['label']}: {r['about'].rstrip('.')}; " + "; ".join(
            f"{kind}: {k['statuses']:,} entries in the status list"
            for kind, k in r["kinds"].items()))
    lines.append("")
    cols = [(r["label"], kind) for r in runs for kind in r["kinds"]]
    lines.append("| view | " + " | ".join(f"{label}, {kind}" for label, kind in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    views = list(now["kinds"][next(iter(now["kinds"]))]["timings"])
    for what in views:
        cells = []
        for r in runs:
            for k in r["kinds"].values():
                t = k["timings"].get(what)
                cells.append("" if t is None else
                             f"{t['first_ms']:.1f} / {t['median_ms']:.1f} ({t['cpu_ms']:.1f})")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
