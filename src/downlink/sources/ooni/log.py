"""Reading the measurement log (``ooni_measurements``); writes go through batcher.py."""

from __future__ import annotations

from sqlalchemy import Connection, select

from downlink.sources.ooni.tables import measurements


def body_of(conn: Connection, uid: str) -> bytes | None:
    """The stored body of a measurement, or None."""
    found = conn.execute(
        select(measurements.c.body).where(measurements.c.measurement_uid == uid)
    ).scalar()
    return bytes(found) if found is not None else None
