"""Questions about individual records: filtered lists, one record, streaming export.

Records carry payloads of up to the body limit (8 MiB), so anything that walks many of
them does it in two steps: :func:`record_sizes` lists the matching ids with the bytes
each takes (without loading the payloads on PostgreSQL), :func:`byte_chunks` groups
those ids into parts of at most a few MiB, and :func:`records_by_ids` loads one part
at a time. Memory stays bounded by one part (or one record), whatever the count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, LargeBinary, Select, Text, cast, func, select

from downlink.store.queries.patterns import matches
from downlink.store.tables import records

Row = dict[str, Any]

# Bytes of one record besides its payload and attrs (the other columns are short).
ROW_OVERHEAD = 1024
# Bytes of records loaded at once when walking many: one part of byte_chunks.
CHUNK_BYTES = 2 * 1024 * 1024
CHUNK_ROWS = 1000


@dataclass(frozen=True)
class RecordFilter:
    """Conditions on records; every field left as None matches everything."""

    classification: str | None = None
    severity: int | None = None
    machine_id: str | None = None
    build: str | None = None
    source: str | None = None
    host_type: str | None = None
    arch: str | None = None
    system_name: str | None = None
    payload_contains: str | None = None
    received_after: float | None = None
    received_before: float | None = None
    captured_after: float | None = None
    from_id: int | None = None
    before_id: int | None = None


def _where(stmt: Select[Any], f: RecordFilter) -> Select[Any]:
    c = records.c
    if f.classification is not None:
        stmt = stmt.where(matches(c.classification, f.classification))
    for value, column in (
        (f.severity, c.severity),
        (f.machine_id, c.machine_id),
        (f.build, c.build),
        (f.source, c.source),
        (f.host_type, c.host_type),
        (f.arch, c.arch),
        (f.system_name, c.system_name),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.payload_contains:
        stmt = stmt.where(c.payload.contains(f.payload_contains, autoescape=True))
    if f.received_after is not None:
        stmt = stmt.where(c.ts_reception > f.received_after)
    if f.received_before is not None:
        stmt = stmt.where(c.ts_reception <= f.received_before)
    if f.captured_after is not None:
        stmt = stmt.where(c.ts_capture > f.captured_after)
    if f.from_id is not None:
        stmt = stmt.where(c.id >= f.from_id)
    if f.before_id is not None:
        stmt = stmt.where(c.id < f.before_id)
    return stmt


def list_records(conn: Connection, f: RecordFilter, limit: int) -> list[Row]:
    """Return up to ``limit`` matching records, newest (highest id) first."""
    stmt = _where(select(records), f).order_by(records.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def count_records(conn: Connection, f: RecordFilter) -> int:
    """Return how many records match."""
    stmt = _where(select(func.count()).select_from(records), f)
    return int(conn.execute(stmt).scalar_one())


def get_record(conn: Connection, record_id: int) -> Row | None:
    """Return one record by id, or None."""
    row = conn.execute(select(records).where(records.c.id == record_id)).mappings().first()
    return dict(row) if row is not None else None


def iter_records(conn: Connection, f: RecordFilter, chunk: int = CHUNK_ROWS) -> Iterator[Row]:
    """Yield every matching record, oldest first, holding one part of byte_chunks at a time."""
    after = (f.from_id or 1) - 1
    while True:
        sizes = record_sizes(conn, replace(f, from_id=after + 1), chunk, oldest_first=True)
        if not sizes:
            return
        for ids in byte_chunks(sizes):
            yield from records_by_ids(conn, ids, oldest_first=True)
        after = sizes[-1][0]


def _size(conn: Connection) -> ColumnElement[Any]:
    """The stored bytes of a record's payload and attrs, plus ROW_OVERHEAD."""
    c = records.c
    if conn.dialect.name == "postgresql":
        # octet_length of a TOASTed text reads its header, not the value.
        payload = func.octet_length(c.payload)
        attrs = func.octet_length(cast(c.attrs, Text))
    else:
        payload = func.length(cast(c.payload, LargeBinary))  # bytes, not characters
        attrs = func.length(cast(c.attrs, LargeBinary))
    return payload + func.coalesce(attrs, 0) + ROW_OVERHEAD


def record_sizes(
    conn: Connection, f: RecordFilter, limit: int, *, oldest_first: bool = False
) -> list[tuple[int, int]]:
    """Return ``(id, bytes)`` of up to ``limit`` matching records, newest first by default."""
    order = records.c.id.asc() if oldest_first else records.c.id.desc()
    stmt = _where(select(records.c.id, _size(conn)), f).order_by(order).limit(limit)
    return [(int(i), int(n)) for i, n in conn.execute(stmt)]


def byte_chunks(
    sizes: Sequence[tuple[int, int]], budget: int = CHUNK_BYTES, max_rows: int = CHUNK_ROWS
) -> Iterator[list[int]]:
    """Group ids, in order, into parts of at most ``budget`` bytes (one record at least)."""
    part: list[int] = []
    total = 0
    for record_id, size in sizes:
        if part and (total + size > budget or len(part) >= max_rows):
            yield part
            part, total = [], 0
        part.append(record_id)
        total += size
    if part:
        yield part


def cut_by_bytes(sizes: Sequence[tuple[int, int]], budget: int) -> Sequence[tuple[int, int]]:
    """Return the leading records of ``sizes`` that fit in ``budget`` bytes (one at least)."""
    total = 0
    for n, (_, size) in enumerate(sizes):
        total += size
        if total > budget:
            return sizes[: max(n, 1)]
    return sizes


def records_by_ids(
    conn: Connection, ids: Sequence[int], *, oldest_first: bool = False
) -> list[Row]:
    """Return the records with these ids (those still there), newest first by default."""
    order = records.c.id.asc() if oldest_first else records.c.id.desc()
    stmt = select(records).where(records.c.id.in_(list(ids))).order_by(order)
    return [dict(r) for r in conn.execute(stmt).mappings()]
