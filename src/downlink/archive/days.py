"""Any source's rows as gzipped NDJSON files by UTC day (``downlink archive``).

Layout, in the archive storage (``DOWNLINK_ARCHIVE``: a directory or ``s3://``)::

    {source}/{archive}/{YYYYMMDD}/{archive}.{YYYYMMDD}.{counter:04d}.ndjson.gz
    {source}/{archive}/{YYYYMMDD}/done.json      # written last: the day is complete

One line per row: the row's columns as a JSON object (bytes as ``{"$base64": …}``),
in id order, a new file every 20 MB, gzip without a timestamp: archiving a day twice
gives identical files. A day is archived once it is over (plus a grace period for late
commits); ``done.json`` lists its files and rows and is what the next run starts after.
"""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, LargeBinary, Table, func, select

from downlink.archive.storage import Storage, StorageError
from downlink.sources.base import Archive
from downlink.sources.registry import Sources
from downlink.store.tables import metadata as core_metadata

SPLIT_BYTES = 20_000_000
GRACE_S = 3600.0
DAY = 86400.0
DONE = "done.json"


@dataclass(frozen=True)
class Bound:
    """An archive with its source and table."""

    source: str
    archive: Archive
    table: Table

    @property
    def prefix(self) -> str:
        return f"{self.source}/{self.archive.name}/"


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


def decode_rows(data: bytes, key: str, table: Table) -> Iterator[dict[str, Any]]:
    """The rows of an archive file, bytes columns restored."""
    binary = [c.name for c in table.c if isinstance(c.type, LargeBinary)]
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise StorageError(f"{key}: not a gzip file ({exc})") from None
    for n, line in enumerate(text.splitlines(), start=1):
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


def day_key(bound: Bound, day: date, counter: int) -> str:
    stamp = f"{day:%Y%m%d}"
    return f"{bound.prefix}{stamp}/{bound.archive.name}.{stamp}.{counter:04d}.ndjson.gz"


def _day_of(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def done_days(storage: Storage, bound: Bound) -> list[date]:
    """The days archived completely, in order."""
    days = []
    for key in storage.list(bound.prefix):
        parts = key[len(bound.prefix):].split("/")
        if len(parts) == 2 and parts[1] == DONE:
            days.append(datetime.strptime(parts[0], "%Y%m%d").replace(tzinfo=UTC).date())
    return sorted(days)


def _where(bound: Bound, lo: float, hi: float) -> list[Any]:
    ts = bound.table.c[bound.archive.ts_column]
    conds = [ts >= lo, ts < hi]
    if bound.archive.where is not None:
        conds.append(bound.archive.where(bound.table))
    return conds


def archive_day(conn: Connection, storage: Storage, bound: Bound, day: date) -> int:
    """Write one day's files, then its ``done.json``; returns the rows archived."""
    lo = _start(day)
    stmt = (
        select(bound.table)
        .where(*_where(bound, lo, lo + DAY))
        .order_by(bound.table.c[bound.archive.id_column])
    )
    files: list[str] = []
    lines: list[bytes] = []
    size = rows = 0

    def flush() -> None:
        nonlocal lines, size
        key = day_key(bound, day, len(files))
        storage.put(key, gzip.compress(b"".join(lines), compresslevel=6, mtime=0))
        files.append(key)
        lines, size = [], 0

    result = conn.execution_options(stream_results=True, yield_per=2000).execute(stmt)
    for row in result:
        line = encode_row(row._asdict()) + b"\n"
        if size and size + len(line) > SPLIT_BYTES:
            flush()
        lines.append(line)
        size += len(line)
        rows += 1
    if lines:
        flush()
    done = {"files": [k.rsplit("/", 1)[1] for k in files], "rows": rows}
    storage.put(f"{bound.prefix}{day:%Y%m%d}/{DONE}", orjson.dumps(done))
    return rows


def archive_closed_days(
    engine: Engine, storage: Storage, bound: Bound, now: float | None = None
) -> tuple[int, int]:
    """Archive every day that is over since the last one archived; (days, rows)."""
    now = time.time() if now is None else now
    finished = done_days(storage, bound)
    after = _start(finished[-1]) + DAY if finished else float("-inf")
    days = total = 0
    ts = bound.table.c[bound.archive.ts_column]
    while True:
        with engine.connect() as conn:
            conds = [ts >= after]
            if bound.archive.where is not None:
                conds.append(bound.archive.where(bound.table))
            first = conn.execute(select(func.min(ts)).where(*conds)).scalar()
            if first is None:
                return days, total
            day = _day_of(float(first))
            if _start(day) + DAY + GRACE_S > now:
                return days, total
            total += archive_day(conn, storage, bound, day)
        days += 1
        after = _start(day) + DAY


def archived_before(storage: Storage, bound: Bound) -> float:
    """Reception time before which every row is archived (0: nothing archived yet).

    Days without rows have no ``done.json``; the archive starts at its first day.
    """
    finished = done_days(storage, bound)
    return _start(finished[-1]) + DAY if finished else 0.0


def rows_between(
    storage: Storage, bound: Bound, since: float, until: float,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The archived rows received in ``[since, until)``, one list per file, in order."""
    day = _day_of(since)
    keys: list[str] = []
    while _start(day) < until:
        keys.extend(sorted(
            k for k in storage.list(f"{bound.prefix}{day:%Y%m%d}/") if k.endswith(".ndjson.gz")
        ))
        day += timedelta(days=1)
    column = bound.archive.ts_column
    for i, key in enumerate(keys):
        rows = [
            r for r in decode_rows(storage.get(key), key, bound.table)
            if since <= float(r[column]) < until
        ]
        if progress is not None:
            progress(i + 1, len(keys))
        yield rows


def for_source(bounds: Sequence[Bound], source: str) -> list[Bound]:
    """The archives of one source."""
    return [b for b in bounds if b.source == source]
