"""Any source's rows as gzipped NDJSON files by UTC day: the layout, staging, closing.

Layout, in the archive storage (``DOWNLINK_ARCHIVE``: a directory or ``s3://``)::

    {source}/{archive}/{YYYYMMDD}/open/{HH}.{first id:020d}.ndjson.gz   # open segments
    {source}/{archive}/{YYYYMMDD}/{archive}.{YYYYMMDD}.{counter:04d}.ndjson.gz
    {source}/{archive}/{YYYYMMDD}/done.json      # the closed files and their rows

One line per row: the row's columns as a JSON object with sorted keys (bytes as
``{"$base64": …}``). The archive consumer (:mod:`downlink.archive.consumer`) *stages*
each batch of committed rows as one open segment per UTC hour it touches, named by
the id of its first row in commit order: a batch read again after a crash starts at
the same row, so it overwrites its segment with the same rows or more, never leaving a
second copy. Each segment is one complete object (a fsynced, renamed file, or one
``PUT``).

A day is *closed* (:func:`close_day`) once it is over: the rows of its open segments
and of its earlier closed files, one copy per id, sorted by ``(reception time, id)``,
written hour by hour into files of at most 20 MB of JSON, gzip without a timestamp;
then ``done.json``; then the segments are deleted. The closed files are a function of
the set of rows alone, so a day comes out byte-identical whether the consumer ran
continuously, was killed and restarted at any point, or ``downlink archive`` or
``downlink reprocess --source archive`` rebuilt it. Readers (:func:`rows_between`)
take the open segments and the closed files of a day together, one copy per id.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import LargeBinary, Table

from downlink.archive.storage import Storage, StorageError
from downlink.sources.base import Archive
from downlink.sources.registry import Sources
from downlink.store.tables import metadata as core_metadata

SPLIT_BYTES = 20_000_000
DAY = 86400.0
HOUR = 3600.0
DONE = "done.json"
OPEN = "open"
SUFFIX = ".ndjson.gz"


@dataclass(frozen=True)
class Bound:
    """An archive with its source and table."""

    source: str
    archive: Archive
    table: Table

    @property
    def key(self) -> str:
        """The archive's name across sources (``source/archive``)."""
        return f"{self.source}/{self.archive.name}"

    @property
    def prefix(self) -> str:
        return f"{self.key}/"


def bind(sources: Sources) -> list[Bound]:
    """Every archive the sources declare, with its table (StorageError if unknown)."""
    tables: dict[str, Table] = dict(core_metadata.tables)
    for md in sources.metadata():
        tables.update(md.tables)
    out = []
    for source in sources.all:
        for spec in source.archives:
            table = tables.get(spec.table)
            if table is None or spec.ts_column not in table.c or spec.id_column not in table.c:
                raise StorageError(
                    f"source {source.name!r} archives {spec.table!r}, which is not a table "
                    f"with the columns {spec.id_column!r} and {spec.ts_column!r}"
                )
            out.append(Bound(source.name, spec, table))
    return out


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"cannot archive a value of type {type(value).__name__}")


def encode_row(row: Mapping[str, Any]) -> bytes:
    """One NDJSON line (without its newline)."""
    plain = {str(k): v for k, v in row.items()}  # column names may be str subclasses
    return orjson.dumps(plain, default=_default, option=orjson.OPT_SORT_KEYS)


def _gunzip(data: bytes, key: str) -> list[bytes]:
    try:
        return gzip.decompress(data).splitlines()
    except (OSError, EOFError) as exc:
        raise StorageError(f"{key}: not a gzip file ({exc})") from None


def _gzip(lines: Iterable[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines), compresslevel=6, mtime=0)


def decode_rows(data: bytes, key: str, table: Table) -> Iterator[dict[str, Any]]:
    """The rows of an archive file, bytes columns restored."""
    binary = [c.name for c in table.c if isinstance(c.type, LargeBinary)]
    for n, line in enumerate(_gunzip(data, key), start=1):
        try:
            row = orjson.loads(line)
            if not isinstance(row, dict):
                raise TypeError
            for name in binary:
                value = row.get(name)
                if isinstance(value, dict):
                    row[name] = base64.b64decode(value["$base64"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise StorageError(f"{key} line {n}: not an archived row") from None
        yield row


# -- keys -------------------------------------------------------------------------------

def stamp(day: date) -> str:
    """``YYYYMMDD``."""
    return f"{day:%Y%m%d}"


def day_of(ts: float) -> date:
    """The UTC day of a reception time."""
    return datetime.fromtimestamp(ts, UTC).date()


def day_start(day: date) -> float:
    """Epoch seconds of the day's midnight (UTC)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def parse_day(text: str) -> date:
    """The day of a ``YYYYMMDD`` stamp."""
    return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).date()


def day_key(bound: Bound, day: date, counter: int) -> str:
    """A closed file of the day."""
    s = stamp(day)
    return f"{bound.prefix}{s}/{bound.archive.name}.{s}.{counter:04d}{SUFFIX}"


def segment_key(bound: Bound, day: date, hour: int, first_id: int) -> str:
    """An open segment: one batch's rows of one hour."""
    return f"{bound.prefix}{stamp(day)}/{OPEN}/{hour:02d}.{first_id:020d}{SUFFIX}"


@dataclass
class DayObjects:
    """What the storage holds for one day."""

    closed: list[str]
    segments: dict[int, list[str]]  # by hour
    done: bool


def objects(storage: Storage, bound: Bound, day: date) -> DayObjects:
    """The day's closed files (in order), open segments (by hour) and ``done.json``."""
    base = f"{bound.prefix}{stamp(day)}/"
    closed: list[str] = []
    segments: dict[int, list[str]] = {}
    done = False
    for key in storage.list(base):
        rest = key[len(base):]
        if rest == DONE:
            done = True
        elif rest.startswith(f"{OPEN}/") and rest.endswith(SUFFIX):
            name = rest[len(OPEN) + 1:]
            try:
                hour = int(name.split(".", 1)[0])
            except ValueError:
                raise StorageError(f"{key}: not an open segment of the archive") from None
            segments.setdefault(hour, []).append(key)
        elif "/" not in rest and rest.endswith(SUFFIX):
            closed.append(key)
    for keys in segments.values():
        keys.sort()
    return DayObjects(sorted(closed), segments, done)


# -- staging (the consumer) -------------------------------------------------------------

def stage(storage: Storage, bound: Bound, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Write a batch's rows (commit order) as open segments; rows staged per day stamp."""
    ts_col, id_col = bound.archive.ts_column, bound.archive.id_column
    groups: dict[tuple[date, int], list[tuple[float, int, bytes]]] = {}
    first: dict[tuple[date, int], int] = {}
    for row in rows:
        ts, ident = float(row[ts_col]), int(row[id_col])
        at = datetime.fromtimestamp(ts, UTC)
        group = (at.date(), at.hour)
        groups.setdefault(group, []).append((ts, ident, encode_row(row)))
        first.setdefault(group, ident)
    counts: dict[str, int] = {}
    for (day, hour), lines in groups.items():
        lines.sort(key=lambda x: (x[0], x[1]))
        storage.put(segment_key(bound, day, hour, first[(day, hour)]),
                    _gzip(line for _, _, line in lines))
        counts[stamp(day)] = counts.get(stamp(day), 0) + len(lines)
    return counts


# -- closing ----------------------------------------------------------------------------

def _order(line: bytes, key: str, ts_col: str, id_col: str) -> tuple[float, int]:
    try:
        row = orjson.loads(line)
        return float(row[ts_col]), int(row[id_col])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise StorageError(f"{key}: a line that is not an archived row") from None


class _ClosedLines:
    """The lines of a day's closed files in order, taken hour by hour."""

    def __init__(self, storage: Storage, keys: list[str], ts_col: str, id_col: str) -> None:
        self.storage, self.keys = storage, list(keys)
        self.ts_col, self.id_col = ts_col, id_col
        self.buffer: list[tuple[float, int, bytes]] = []
        self.pos = 0

    def _fill(self) -> bool:
        while self.pos >= len(self.buffer):
            if not self.keys:
                return False
            key = self.keys.pop(0)
            self.buffer = [(*_order(x, key, self.ts_col, self.id_col), x)
                           for x in _gunzip(self.storage.get(key), key)]
            self.pos = 0
        return True

    def before(self, end: float) -> list[tuple[float, int, bytes]]:
        """The next lines received before ``end``."""
        out = []
        while self._fill() and self.buffer[self.pos][0] < end:
            out.append(self.buffer[self.pos])
            self.pos += 1
        return out


@dataclass(frozen=True)
class Closed:
    """A closed day: its files and rows, and the open segments it took in."""

    files: list[str]
    rows: int
    segments: list[str]


def close_day(
    storage: Storage, bound: Bound, day: date, tick: Callable[[], None] | None = None
) -> Closed:
    """Write the day's closed files and ``done.json`` from its open segments and earlier
    closed files (one copy per id, by reception time and id); the segments are left for
    :func:`drop_segments`, which the caller runs once it has checked the count.

    ``tick()`` is called before each hour (the closer renews its lease there, and raises
    when it lost it)."""
    found = objects(storage, bound, day)
    ts_col, id_col = bound.archive.ts_column, bound.archive.id_column
    earlier = _ClosedLines(storage, found.closed, ts_col, id_col)
    start = day_start(day)
    files: list[str] = []
    pending: list[bytes] = []
    size = rows = 0

    def flush() -> None:
        nonlocal pending, size
        key = day_key(bound, day, len(files))
        storage.put(key, _gzip(pending))
        files.append(key)
        pending, size = [], 0

    for hour in range(24):
        if tick is not None:
            tick()
        lines = earlier.before(start + (hour + 1) * HOUR)
        for key in found.segments.get(hour, ()):
            lines.extend((*_order(x, key, ts_col, id_col), x)
                         for x in _gunzip(storage.get(key), key))
        lines.sort(key=lambda x: (x[0], x[1]))
        last_id: int | None = None
        for _ts, ident, line in lines:
            if ident == last_id:
                continue  # the same row from a segment and an earlier closed file
            last_id = ident
            if size and size + len(line) + 1 > SPLIT_BYTES:
                flush()
            pending.append(line)
            size += len(line) + 1
            rows += 1
    rest = earlier.before(float("inf"))
    if rest:
        raise StorageError(f"{found.closed[-1]}: rows outside the day {stamp(day)}")
    if pending:
        flush()
    if tick is not None:
        tick()
    # Files past the new last one can only be left from a day rebuilt smaller.
    for key in found.closed:
        if key not in files:
            storage.delete(key)
    done = {"files": [k.rsplit("/", 1)[1] for k in files], "rows": rows}
    storage.put(f"{bound.prefix}{stamp(day)}/{DONE}", orjson.dumps(done))
    segments = [k for keys in found.segments.values() for k in keys]
    return Closed(files, rows, sorted(segments))


def drop_segments(storage: Storage, keys: Iterable[str]) -> None:
    """Delete open segments a close took in."""
    for key in keys:
        storage.delete(key)


def drop_day(storage: Storage, bound: Bound, day: date) -> int:
    """Delete everything the archive holds for the day (a rebuild); how many objects."""
    keys = list(storage.list(f"{bound.prefix}{stamp(day)}/"))
    for key in keys:
        storage.delete(key)
    return len(keys)


# -- reading ----------------------------------------------------------------------------

def rows_between(
    storage: Storage, bound: Bound, since: float, until: float,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The archived rows received in ``[since, until)``, one list per file, in order.

    A day's open segments and closed files are read together, one copy per id.
    """
    day = day_of(since)
    plan: list[tuple[str, bool]] = []  # (key, is a closed file of a day with segments)
    while day_start(day) < until:
        found = objects(storage, bound, day)
        segments = [k for h in sorted(found.segments) for k in found.segments[h]]
        plan.extend((k, False) for k in segments)
        plan.extend((k, bool(segments)) for k in found.closed)
        day += timedelta(days=1)
    column, id_col = bound.archive.ts_column, bound.archive.id_column
    seen: set[int] = set()
    for i, (key, check) in enumerate(plan):
        rows = []
        for row in decode_rows(storage.get(key), key, bound.table):
            ident = int(row[id_col])
            if check and ident in seen:
                continue
            if key.rsplit("/", 2)[-2] == OPEN:
                seen.add(ident)
            if since <= float(row[column]) < until:
                rows.append(row)
        if progress is not None:
            progress(i + 1, len(plan))
        yield rows


def for_source(bounds: Sequence[Bound], source: str) -> list[Bound]:
    """The archives of one source."""
    return [b for b in bounds if b.source == source]
