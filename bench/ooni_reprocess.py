"""OONI benchmark: reprocessing 1M measurements from the raw archive.

The 21 fixture measurements are replicated to ``--measurements`` (default 1,000,000,
the issue's target), spread over ``--days`` days of reception, and written to a local
raw archive the way ``downlink ooni archive`` writes it (deterministic bundling, gzip
JSONL by hour/country/test). Then ``reprocess.run`` (what ``downlink ooni reprocess``
runs) rescores the whole range into ``ooni_fastpath`` of a SQLite database, file by
file, one transaction each.

The baseline in the same run is reading the same archive files only (download, gunzip,
one ``Entry`` per line: the floor any reprocessing pays). Rates are given per
CPU-second of this process (the database is SQLite, in process) and per wall second.

    python bench/ooni_reprocess.py [--measurements 1000000] [--days 10] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402
from ooni import fixture_bodies  # noqa: E402

from downlink.archive.storage import LocalStorage  # noqa: E402
from downlink.settings import Settings  # noqa: E402
from downlink.sources.ooni import archive, reprocess  # noqa: E402
from downlink.sources.ooni.tables import fastpath  # noqa: E402
from downlink.store import migrate  # noqa: E402
from downlink.store.engine import make_engine  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)


def write_archive(storage: LocalStorage, n: int, days: int) -> int:
    """Write ``n`` replicated measurements, hour by hour; returns the files written."""
    bodies = fixture_bodies()
    hours = days * 24
    files = 0
    for hour in range(hours):
        base = START.timestamp() + hour * 3600
        entries = []
        for i in range(hour, n, hours):
            stored, uid = bodies[i % len(bodies)]
            # A unique uid per copy, the fixture's own time and test (so the scorer's
            # date check does the same work as in bench/ooni.py).
            uid = f"{uid.rsplit('_', 1)[0]}_{i:016x}"
            entries.append(archive.Entry(uid, f"r{i % 997}", base + (i // hours) % 3600, stored))
        for key, items in archive.bundle(entries, "bench").items():
            storage.put(key, archive.encode(items))
            files += 1
    return files


def read_only(storage: LocalStorage, since: datetime, until: datetime) -> int:
    count = 0
    for key in archive.keys_between(storage, since, until):
        for _entry in archive.decode(storage.get(key), key):
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measurements", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    about = machine()
    n = args.measurements
    tmp = Path(tempfile.mkdtemp(prefix="downlink-ooni-reprocess-"))
    try:
        storage = LocalStorage(tmp / "archive")
        t0 = time.perf_counter()
        files = write_archive(storage, n, args.days)
        print(f"archive: {files} files for {n} measurements in {time.perf_counter() - t0:.0f} s")
        size = sum(p.stat().st_size for p in (tmp / "archive").rglob("*") if p.is_file())
        since, until = START, START + timedelta(days=args.days)

        t0, c0 = time.perf_counter(), time.process_time()
        assert read_only(storage, since, until) == n
        read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"read only: {read_cpu:.1f} CPU s, {read_s:.1f} s")

        settings = Settings(database_url=f"sqlite:///{tmp / 'reprocess.db'}")
        engine = make_engine(settings, writer=True)
        migrate.upgrade(engine, sources=settings.registry)
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        out = reprocess.run(engine.begin, storage, since, until)
        run_s, run_cpu = time.perf_counter() - t0, time.process_time() - c0
        load1 = os.getloadavg()[0]
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(fastpath)).scalar_one()
        engine.dispose()
        assert out.measurements == n and rows == n, (out, rows)
        print(f"reprocess: {run_cpu:.1f} CPU s, {run_s:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = table(
        ["work", "measurements", "CPU s", "wall s", "per CPU-second", "per wall second",
         "ratio to reading (CPU)"],
        [
            ["read the archive only (gunzip + decode)", n, round(read_cpu, 1), round(read_s, 1),
             round(n / read_cpu), round(n / read_s), "1.00"],
            ["reprocess (read + score + upsert, SQLite)", n, round(run_cpu, 1), round(run_s, 1),
             round(n / run_cpu), round(n / run_s), f"{read_cpu / run_cpu:.3f}"],
        ],
    )
    print(result)
    body = (
        "## OONI: reprocessing from the raw archive\n\n"
        f"`python bench/ooni_reprocess.py --measurements {n} --days {args.days}` — {about} "
        f"Load average {load0:.1f} when the reprocess started, {load1:.1f} when it ended.\n\n"
        f"The 21 fixture measurements replicated to {n:,}, over {args.days} days of "
        f"reception, archived as `downlink ooni archive` writes them ({files:,} files, "
        f"{size / 1e6:,.0f} MB gzip), then rescored by `reprocess.run` (what "
        "`downlink ooni reprocess --since … --until …` runs) into a fresh SQLite "
        "database: every row written (checked). The baseline, in the same run, is reading "
        "the same files only. The reprocess is one process on one core (SQLite in "
        "process), so its CPU seconds are the cost; the scoring is most of it (compare "
        "the scoring section).\n\n" + result
    )
    if not args.no_write:
        write_section("ooni-reprocess", body)


if __name__ == "__main__":
    main()
