"""What the navigation bar's search box finds among OONI's data: a measurement by its
uid, a report by its id (exact matches, through the primary key and the ``report_id``
index of ``ooni_fastpath``; a measurement not scored yet through the unique uid of the
raw measurements)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from downlink.sources.ooni.tables import fastpath, measurements

UID_MAX = 100  # the column's length: longer text is no measurement uid


def find(conn: Connection, text: str) -> dict[str, Any]:
    """``ooni_measurement`` (``{measurement_uid, test_name, probe_cc}`` or None) and
    ``ooni_report`` (``{report_id, measurements}`` or None)."""
    found: dict[str, Any] = {"ooni_measurement": None, "ooni_report": None}
    if not text:
        return found
    fp = fastpath.c
    if len(text) <= UID_MAX:
        row = conn.execute(
            select(fp.measurement_uid, fp.test_name, fp.probe_cc).where(fp.measurement_uid == text)
        ).first()
        if row is None:
            row = conn.execute(
                select(measurements.c.measurement_uid, measurements.c.test_name,
                       measurements.c.probe_cc).where(measurements.c.measurement_uid == text)
            ).first()
        if row is not None:
            found["ooni_measurement"] = {
                "measurement_uid": row[0], "test_name": row[1], "probe_cc": row[2],
            }
    n = conn.execute(select(func.count()).where(fp.report_id == text)).scalar_one()
    if n:
        found["ooni_report"] = {"report_id": text, "measurements": int(n)}
    return found
