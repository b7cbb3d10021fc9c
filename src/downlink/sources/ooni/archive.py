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
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from downlink.archive.storage import Storage, StorageError
from downlink.sources.ooni.tables import archive_index, measurements, state

SPLIT_BYTES = 20_000_000
GRACE_S = 300.0
HOUR = 3600.0
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


def bundle(entries: Sequence[Entry], collector_id: str) -> dict[str, list[Entry]]:
    """Group entries into files: same hour, CC and test name, sorted by uid, split by size."""
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for e in entries:
        _ts, cc, testname, _h = e.measurement_uid.split("_")
        groups.setdefault((hour_dir(e.ts_reception), cc, testname), []).append(e)
    files: dict[str, list[Entry]] = {}
    for (hour, cc, testname), items in sorted(groups.items()):
        items.sort(key=lambda e: e.measurement_uid)
        counter, size = 0, 0
        for e in items:
            n = len(e.body) + 100
            if size and size + n > SPLIT_BYTES:
                counter, size = counter + 1, 0
            files.setdefault(file_key(hour, cc, testname, collector_id, counter), []).append(e)
            size += n
    return files


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


def archive_hour(
    conn: Connection, storage: Storage, start: float, collector_id: str
) -> int:
    """Archive the measurements received in ``[start, start + 1 h)``; returns how many."""
    rows = conn.execute(
        select(
            measurements.c.measurement_uid, measurements.c.report_id,
            measurements.c.ts_reception, measurements.c.body,
        ).where(measurements.c.ts_reception >= start, measurements.c.ts_reception < start + HOUR)
    ).all()
    entries = [Entry(r[0], r[1], float(r[2]), bytes(r[3])) for r in rows]
    index: list[dict[str, Any]] = []
    for key, items in bundle(entries, collector_id).items():
        storage.put(key, encode(items))
        index.extend(
            {"measurement_uid": e.measurement_uid, "key": key, "line": n}
            for n, e in enumerate(items, start=1)
        )
    for chunk in range(0, len(index), 2000):
        stmt = _insert(conn)(archive_index).values(index[chunk : chunk + 2000])
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[archive_index.c.measurement_uid],
                set_={"key": stmt.excluded.key, "line": stmt.excluded.line},
            )
        )
    return len(entries)


def archive_closed_hours(
    engine_begin: Any, storage: Storage, collector_id: str, now: float | None = None
) -> tuple[int, int]:
    """Archive every hour that is over (and its grace period); (hours, measurements).

    ``engine_begin`` is ``engine.begin``: each hour is one transaction, committed after
    its files are durable, so a crash re-archives that hour identically.
    """
    now = time.time() if now is None else now
    hours = done = 0
    while True:
        with engine_begin() as conn:
            start = archived_until(conn)
            first = conn.execute(
                select(func.min(measurements.c.ts_reception)).where(
                    measurements.c.ts_reception >= start
                )
            ).scalar()
            if first is None:
                return hours, done
            hour = float(int(first // HOUR) * HOUR)
            if hour + HOUR + GRACE_S > now:
                return hours, done
            done += archive_hour(conn, storage, hour, collector_id)
            _set_state(conn, NEXT_HOUR, repr(hour + HOUR))
            hours += 1


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
