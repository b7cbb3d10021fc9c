"""Questions about individual records: filtered lists, one record, streaming export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select

from downlink.store.queries.patterns import matches
from downlink.store.tables import records

Row = dict[str, Any]


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


def iter_records(conn: Connection, f: RecordFilter, chunk: int = 2000) -> Iterator[Row]:
    """Yield every matching record, oldest first, reading ``chunk`` rows at a time."""
    last = 0
    while True:
        stmt = (
            _where(select(records), f)
            .where(records.c.id > last)
            .order_by(records.c.id)
            .limit(chunk)
        )
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
        if not rows:
            return
        yield from rows
        last = rows[-1]["id"]
