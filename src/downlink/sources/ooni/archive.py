"""The raw archive: every accepted submission in gzipped JSONL, by hour/country/test.

Layout (reference A3, OONI's post-2020 layout)::

    raw/{YYYYMMDD}/{HH}/{CC}/{testname}/{YYYYMMDDHH}_{CC}_{testname}.n{cid}.{counter}.jsonl.gz

Each line holds one measurement as ``{"measurement_uid", "report_id", "ts_reception",
"body"}``, ``body`` being the stored body (``orjson`` re-encodes it to the stored bytes,
so the uid's hash still checks). Unlike OONI's content-only lines this makes the archive
self-describing: it can be rescored with the database gone.

Bundling is deterministic: an hour is archived only once it is over (plus a grace
period), its measurements sorted by uid, a new file started every 20 MB of JSON, and
gzip written without a timestamp, so archiving the same hour twice gives identical
files. ``ooni_archive_index`` maps each uid to its file and line; the log's rows are
only purged once their hour is archived.

The server archives by itself: :mod:`downlink.sources.ooni.archive_task` declares the
task ``ooni_archive`` (``Source.tasks``), which every process running the consumers
runs every ``DOWNLINK_OONI_ARCHIVE_EVERY_S``, one at a time under a lease
(:mod:`downlink.pipeline.tasks`); ``downlink ooni archive`` runs the same
:func:`archive_due` by hand.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from downlink.archive.storage import Storage, StorageError
from downlink.sources.base import TaskContext
from downlink.sources.ooni.tables import archive_index, measurements, state

SPLIT_BYTES = 20_000_000
HOUR = 3600.0
READ_CHUNK = 500
INDEX_CHUNK = 2000
NEXT_HOUR = "archive_next_hour"


@dataclass(frozen=True)
class Entry:
    """One archived measurement."""

    measurement_uid: str
    report_id: str
    ts_reception: float
    body: bytes


def hour_dir(ts: float) -> str:
    """``YYYYMMDDHH`` of a reception time."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d%H")


def file_key(hour: str, cc: str, testname: str, collector_id: str, counter: int) -> str:
    """The archive key of one file."""
    return (
        f"raw/{hour[:8]}/{hour[8:]}/{cc}/{testname}/"
        f"{hour}_{cc}_{testname}.n{collector_id}.{counter}.jsonl.gz"
    )


def _line(e: Entry) -> bytes:
    return orjson.dumps(
        {
            "measurement_uid": e.measurement_uid,
            "report_id": e.report_id,
            "ts_reception": e.ts_reception,
            "body": orjson.Fragment(e.body),
        }
    )


def plan(items: Sequence[tuple[str, float, int]], collector_id: str) -> dict[str, list[str]]:
    """The files of some measurements, ``(uid, reception time, body length)`` each: file
    key to uids in line order (same hour, CC and test name, sorted by uid, split by size).
    Only the bodies' lengths are needed, so an hour is planned without holding it."""
    groups: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for uid, ts, length in items:
        _ts, cc, testname, _h = uid.split("_")
        groups.setdefault((hour_dir(ts), cc, testname), []).append((uid, length))
    files: dict[str, list[str]] = {}
    for (hour, cc, testname), group in sorted(groups.items()):
        group.sort()
        counter, size = 0, 0
        for uid, length in group:
            n = length + 100
            if size and size + n > SPLIT_BYTES:
                counter, size = counter + 1, 0
            files.setdefault(file_key(hour, cc, testname, collector_id, counter), []).append(uid)
            size += n
    return files


def bundle(entries: Sequence[Entry], collector_id: str) -> dict[str, list[Entry]]:
    """Group entries into files (:func:`plan`), each with its entries in line order."""
    by_uid = {e.measurement_uid: e for e in entries}
    planned = plan([(e.measurement_uid, e.ts_reception, len(e.body)) for e in entries],
                   collector_id)
    return {key: [by_uid[u] for u in uids] for key, uids in planned.items()}


def encode(entries: Sequence[Entry]) -> bytes:
    """A file's bytes: gzip (no timestamp, no name) of one JSON line per entry."""
    data = b"".join(_line(e) + b"\n" for e in entries)
    return gzip.compress(data, compresslevel=6, mtime=0)


def decode(data: bytes, key: str) -> Iterator[Entry]:
    """The entries of an archive file."""
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise StorageError(f"{key}: not a gzip file ({exc})") from None
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            item = orjson.loads(line)
            yield Entry(
                item["measurement_uid"], item["report_id"], float(item["ts_reception"]),
                orjson.dumps(item["body"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise StorageError(f"{key} line {n}: not an archive entry") from None


def _state(conn: Connection, key: str) -> str | None:
    value: str | None = conn.execute(select(state.c.value).where(state.c.key == key)).scalar()
    return value


def _set_state(conn: Connection, key: str, value: str) -> None:
    conn.execute(state.delete().where(state.c.key == key))
    conn.execute(state.insert().values(key=key, value=value))


def archived_until(conn: Connection) -> float:
    """Reception time before which every measurement is archived (0: none yet)."""
    value = _state(conn, NEXT_HOUR)
    return float(value) if value else 0.0


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def first_unarchived(conn: Connection) -> float | None:
    """Start of the hour of the oldest measurement not archived yet (None: none)."""
    first = conn.execute(
        select(func.min(measurements.c.ts_reception)).where(
            measurements.c.ts_reception >= archived_until(conn)
        )
    ).scalar()
    return None if first is None else float(int(float(first) // HOUR) * HOUR)


def next_due(conn: Connection, now: float, grace_s: float) -> float | None:
    """Start of the oldest hour to archive now: it holds measurements not archived and
    ended ``grace_s`` ago (None: nothing is due)."""
    hour = first_unarchived(conn)
    if hour is None or hour + HOUR + grace_s > now:
        return None
    return hour


def hold_purge(conn: Connection) -> None:
    """Before the first hour is archived, mark the oldest measurement's hour as where the
    archive starts, so that retention keeps every measurement the archive lacks."""
    if _state(conn, NEXT_HOUR) is not None:
        return
    hour = first_unarchived(conn)
    if hour is not None:
        _set_state(conn, NEXT_HOUR, repr(hour))


def hour_sizes(conn: Connection, start: float) -> list[tuple[str, float, int]]:
    """``(uid, reception time, body length)`` of the measurements of an hour."""
    rows = conn.execute(
        select(
            measurements.c.measurement_uid, measurements.c.ts_reception,
            func.length(measurements.c.body),
        ).where(measurements.c.ts_reception >= start, measurements.c.ts_reception < start + HOUR)
    ).all()
    return [(str(r[0]), float(r[1]), int(r[2])) for r in rows]


def entries_of(conn: Connection, uids: Sequence[str]) -> list[Entry]:
    """The measurements of these uids (any order)."""
    rows = conn.execute(
        select(
            measurements.c.measurement_uid, measurements.c.report_id,
            measurements.c.ts_reception, measurements.c.body,
        ).where(measurements.c.measurement_uid.in_(list(uids)))
    ).all()
    return [Entry(r[0], r[1], float(r[2]), bytes(r[3])) for r in rows]


def index_entries(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record where archived measurements are (a measurement is indexed once: its uid is
    the key, so archiving an hour again rewrites the same rows)."""
    stmt = _insert(conn)(archive_index).values(list(rows))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[archive_index.c.measurement_uid],
            set_={"key": stmt.excluded.key, "line": stmt.excluded.line},
        )
    )


def mark_archived(conn: Connection, start: float) -> bool:
    """Move the archive's mark past the hour at ``start`` (False: it is past already)."""
    if archived_until(conn) > start:
        return False
    _set_state(conn, NEXT_HOUR, repr(start + HOUR))
    return True


class HourChanged(RuntimeError):
    """An hour's measurements changed while it was archived (it is archived again)."""


def archive_hour(ctx: TaskContext, storage: Storage, start: float, collector_id: str
                 ) -> int | None:
    """Archive the measurements received in ``[start, start + 1 h)``; how many (None: the
    run was told to stop before the hour was done; it is done again by the next run).

    The hour's files are planned from the bodies' lengths and written one at a time
    (one file's bodies in memory), durably, before their index rows; the hour is marked
    done last. Every write goes through ``ctx.write`` (only the lease holder commits),
    so a run killed anywhere leaves the hour to be archived again, identically."""
    files = plan(ctx.read(hour_sizes, start), collector_id)
    index: list[dict[str, Any]] = []
    for key, uids in files.items():
        if ctx.stopping():
            return None
        found: dict[str, Entry] = {}
        for part in range(0, len(uids), READ_CHUNK):
            found.update((e.measurement_uid, e) for e in ctx.read(
                entries_of, uids[part : part + READ_CHUNK]))
        if len(found) != len(uids):
            raise HourChanged(f"{key}: {len(uids) - len(found)} measurements went away")
        storage.put(key, encode([found[u] for u in uids]))
        index.extend(
            {"measurement_uid": u, "key": key, "line": n} for n, u in enumerate(uids, start=1)
        )
    for part in range(0, len(index), INDEX_CHUNK):
        ctx.write(index_entries, index[part : part + INDEX_CHUNK])
    ctx.write(mark_archived, start)
    return len(index)


@dataclass(frozen=True)
class Archived:
    """What one archiving run did."""

    hours: int
    measurements: int


def archive_due(ctx: TaskContext, storage: Storage, collector_id: str, grace_s: float,
                now: float | None = None) -> Archived:
    """Archive every hour that is over (and its grace period), oldest first.

    The server's task ``ooni_archive`` and ``downlink ooni archive`` both run this,
    under the task's lease (``downlink.pipeline.tasks``)."""
    at = time.time() if now is None else now
    if not ctx.read(archived_until):
        ctx.write(hold_purge)
    hours = done = 0
    while not ctx.stopping():
        start = ctx.read(next_due, at, grace_s)
        if start is None:
            break
        n = archive_hour(ctx, storage, start, collector_id)
        if n is None:
            break
        hours, done = hours + 1, done + n
    return Archived(hours, done)


def body_from_archive(conn: Connection, storage: Storage, uid: str) -> bytes | None:
    """The stored body of an archived measurement, or None."""
    found = conn.execute(
        select(archive_index.c.key, archive_index.c.line).where(
            archive_index.c.measurement_uid == uid
        )
    ).first()
    if found is None:
        return None
    key, line = found
    for n, entry in enumerate(decode(storage.get(key), key), start=1):
        if n == line and entry.measurement_uid == uid:
            return entry.body
    return None


def keys_between(
    storage: Storage, since: datetime, until: datetime,
    ccs: Sequence[str] = (), testnames: Sequence[str] = (),
) -> list[str]:
    """Archive files of the days in ``[since, until)`` (by reception), filtered, sorted."""
    keys: list[str] = []
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < until:
        for key in storage.list(f"raw/{day:%Y%m%d}/"):
            parts = key.split("/")
            if len(parts) != 6 or not key.endswith(".jsonl.gz"):
                continue
            _raw, _day, _hour, cc, testname, _name = parts
            if ccs and cc not in ccs:
                continue
            if testnames and testname not in testnames:
                continue
            keys.append(key)
        day = datetime.fromtimestamp(day.timestamp() + 86400, UTC)
    return sorted(keys)
