"""What each secondary index of ``records`` costs SQLite's insert and commit, in CPU.

A SQLite ``records`` table (the migrations' schema) is filled with ``--rows`` generated
records; then, for the full schema and once without each secondary index in turn, a
copy of it takes ``--records`` more in transactions of ``--batch`` (as the group-commit
writer does: ``BEGIN IMMEDIATE``, one ``executemany``, ``COMMIT``, WAL with
``synchronous=FULL``). It reports this process's CPU time per record
(``time.process_time``: the B-tree pages SQLite changes and writes; the fsync wait is
not CPU, so a loaded machine does not inflate it). The new records look like live
ones: received now, captured up to a minute earlier, machines and builds drawn from
a fleet (``downlink.testing.generate``).

    python bench/record_indexes.py [--rows 300000] [--records 12800] [--batch 64]

It prints a table and writes nothing: which indexes pages and APIs need is decided by
``tests/store/test_query_plans.py``, not by this.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402

from downlink.settings import Settings  # noqa: E402
from downlink.store import migrate  # noqa: E402
from downlink.store.engine import make_engine  # noqa: E402
from downlink.store.tables import records  # noqa: E402
from downlink.testing.generate import RecordGenerator  # noqa: E402

COLUMNS = [c.name for c in records.columns if c.name not in ("id", "guilty_id", "sender_flagged")]
INSERT = (f"INSERT INTO records ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(COLUMNS))})")


def rows(n: int, seed: int, live: bool) -> list[tuple[Any, ...]]:
    """``n`` generated records as insert tuples (``live``: received now, in order)."""
    gen = RecordGenerator(seed=seed)
    now = time.time()
    out = []
    for i in range(n):
        r = gen.row()
        r.setdefault("attrs", None)
        r["dedup_key"] = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
        if live:
            r["ts_reception"] = now + i * 0.001
            r["ts_capture"] = r["ts_reception"] - (i * 7919 % 60)
        out.append(tuple(r.get(c) for c in COLUMNS))
    return out


def build_base(path: Path, n: int) -> list[str]:
    """The filled database; the names of its secondary indexes on ``records``."""
    settings = Settings(database_url=f"sqlite:///{path}")
    engine = make_engine(settings)
    try:
        migrate.upgrade(engine, sources=settings.registry)
    finally:
        engine.dispose()
    con = sqlite3.connect(path)
    try:
        con.executemany(INSERT, rows(n, seed=3, live=False))
        con.commit()
        found = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' "
            "AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
    finally:
        con.close()
    return [name for (name,) in found]


def cpu_per_record(base: Path, work: Path, drop: str | None,
                   batch: list[tuple[Any, ...]], size: int) -> float:
    """CPU microseconds per record inserted into a copy of ``base`` without ``drop``."""
    shutil.copy(base, work)
    con = sqlite3.connect(work, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        if drop is not None:
            con.execute(f'DROP INDEX "{drop}"')
        started = time.process_time()
        for k in range(0, len(batch), size):
            con.execute("BEGIN IMMEDIATE")
            con.executemany(INSERT, batch[k:k + size])
            con.execute("COMMIT")
        took = time.process_time() - started
    finally:
        con.close()
    for suffix in ("-wal", "-shm"):
        Path(str(work) + suffix).unlink(missing_ok=True)
    return took / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="records already stored")
    parser.add_argument("--records", type=int, default=12_800, help="records inserted per run")
    parser.add_argument("--batch", type=int, default=64, help="records per transaction")
    parser.add_argument("--no-write", action="store_true", help="accepted; nothing is written")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-indexes-"))
    try:
        base = tmp / "base.db"
        names = build_base(base, args.rows)
        new = rows(args.records, seed=9, live=True)
        full = cpu_per_record(base, tmp / "run.db", None, new, args.batch)
        out: list[list[object]] = [["(every index)", f"{full:.1f}", "-"]]
        for name in names:
            us = cpu_per_record(base, tmp / "run.db", name, new, args.batch)
            out.append([f"without {name}", f"{us:.1f}", f"{full - us:+.1f}"])
            print(out[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.rows:,} records stored, {args.records:,} inserted in transactions of "
          f"{args.batch}; CPU us per record")
    print(table(["schema", "CPU us/record", "the index's cost"], out))


if __name__ == "__main__":
    main()
