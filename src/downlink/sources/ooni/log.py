"""Writing the measurement log (``ooni_measurements``) and reading it back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from downlink.sources.ooni.tables import measurements


def insert(conn: Connection, row: Mapping[str, Any]) -> None:
    """Append one accepted submission (committed by the caller's transaction)."""
    conn.execute(measurements.insert().values(**row))


def body_of(conn: Connection, uid: str) -> bytes | None:
    """The stored body of a measurement, or None."""
    found = conn.execute(
        select(measurements.c.body).where(measurements.c.measurement_uid == uid)
    ).scalar()
    return bytes(found) if found is not None else None
