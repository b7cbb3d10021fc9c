"""What the event id index (migration 0025) costs each stored record, on SQLite.

Two databases with the same schema but for ``ix_records_event_id`` (one has it
dropped) each get ``--existing`` records, then ``--records`` more are stored through
the writer's path (``insert_records``), ``--batch`` records per transaction (the
group commit): CPU per record (``time.process_time``, which load on the machine does
not inflate), bytes SQLite writes per record (``/proc/self/io`` ``wchar``: the WAL
frames and the checkpoints into the database file) and the database file per record.
The event ids are random, as Clear Linux clients make them, so every record adds one
entry at a random place of the index: the cost grows as the index outgrows SQLite's
page cache, which is why ``--existing`` is large by default.

    python bench/event_id_index.py [--existing 1000000] [--records 20000] [--batch 100]

Check it at a tiny size with ``--existing 2000 --records 1000 --no-write``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_section  # noqa: E402

from downlink.settings import Settings  # noqa: E402
from downlink.store.database import Store  # noqa: E402
from downlink.store.inserts import RECORD_COLUMNS, insert_records  # noqa: E402
from downlink.testing.generate import RecordGenerator  # noqa: E402

INDEX = "ix_records_event_id"


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar")


def _store_all(store: Store, gen: RecordGenerator, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        rows = [{c: r.get(c) for c in RECORD_COLUMNS} for r in gen.rows(min(batch, n - start))]
        store.run_write(insert_records, rows)


def measure(folder: Path, indexed: bool, existing: int, n: int, batch: int) -> list[object]:
    path = folder / f"{'with' if indexed else 'without'}.db"
    store = Store(Settings(database_url=f"sqlite:///{path}"))
    try:
        store.migrate()
        if not indexed:
            store.run_write(lambda conn: conn.exec_driver_sql(f"DROP INDEX {INDEX}"))
        gen = RecordGenerator(seed=7, machines=20_000, days=60)
        _store_all(store, gen, existing, 5000)
        size_before = path.stat().st_size
        cpu, wrote = time.process_time(), _wchar()
        _store_all(store, gen, n, batch)
        cpu, wrote = time.process_time() - cpu, _wchar() - wrote
        grown = path.stat().st_size - size_before
    finally:
        store.close()
    return [
        "with" if indexed else "without",
        f"{cpu / n * 1e6:.1f}",
        f"{wrote / n:,.0f}",
        f"{path.stat().st_size / (existing + n):,.0f}",
        f"{grown / n:,.0f}",
    ]


HEADERS = ["event id index", "CPU us/record", "bytes written/record",
           "database bytes/record", "file growth bytes/record (measured part)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--existing", type=int, default=1_000_000,
                        help="records stored before measuring")
    parser.add_argument("--records", type=int, default=20_000, help="records measured")
    parser.add_argument("--batch", type=int, default=100, help="records per transaction")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    about = machine()
    with tempfile.TemporaryDirectory(prefix="downlink-eventid-") as tmp:
        rows = []
        for indexed in (False, True):
            rows.append(measure(Path(tmp), indexed, args.existing, args.records, args.batch))
            print(table(HEADERS, rows[-1:]), flush=True)
    cpu = [float(str(r[1])) for r in rows]
    ratio = cpu[0] / cpu[1] if cpu[1] else float("nan")
    result = table(HEADERS, rows)
    print(result)
    print(f"records/CPU-second with the index / without: {ratio:.2f}")
    body = (
        "## Event id index\n\n"
        f"`python bench/event_id_index.py --existing {args.existing} --records "
        f"{args.records} --batch {args.batch}` — {about}\n\n"
        f"SQLite (`synchronous=FULL`), {args.existing:,} records stored, then "
        f"{args.records:,} more through the writer's path, {args.batch} a transaction, "
        "with and without the partial index on `records.event_id` (migration "
        "0025_event_id_index; random event ids, as clients make them). CPU time of the "
        "process per record; bytes written per record (WAL and checkpoints, "
        "`/proc/self/io` wchar); the database file's size per record.\n\n"
        f"{result}\n\nRecords per CPU-second with the index against without: {ratio:.2f}.\n"
    )
    if not args.no_write:
        write_section("event-id-index", body)


if __name__ == "__main__":
    main()
