"""NDJSON export and import of records: the portable, lossless dump format.

One JSON object a line: the API's record fields plus ``ts_capture_epoch``,
``ts_reception_epoch``, ``attrs`` and ``dedup_key``, so an import restores every
stored value. Re-importing the same dump creates no duplicates for records that
carry a ``dedup_key``.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

from downlink.store.record_json import TS_FORMAT, clear_json
from downlink.store.storable import unstorable_field

Row = dict[str, Any]


class ImportError_(ValueError):
    """A line of an import file cannot be turned into a record."""


def export_row(row: Row) -> Row:
    """Return the dump form of a stored record."""
    out = clear_json(row)
    out["ts_capture_epoch"] = row["ts_capture"]
    out["ts_reception_epoch"] = row["ts_reception"]
    out["attrs"] = row.get("attrs")
    out["dedup_key"] = row.get("dedup_key")
    out["tid"] = row.get("tid", "")
    return out


def _epoch(doc: Row, key: str) -> float:
    value = doc.get(f"{key}_epoch")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = doc.get(key)
    if isinstance(text, str):
        try:
            return float(calendar.timegm(time.strptime(text, TS_FORMAT)))
        except ValueError:
            pass
    raise ImportError_(f"{key} is missing or not a 'YYYY-MM-DD HH:MM:SS UTC' time")


_TEXT = (
    "classification",
    "machine_id",
    "arch",
    "build",
    "kernel_version",
    "system_name",
    "board_name",
    "cpu_model",
    "bios_version",
    "event_id",
    "payload",
)


def import_row(doc: Any) -> Row:
    """Turn one dump object back into a row to store, or raise ImportError_."""
    if not isinstance(doc, dict):
        raise ImportError_("line is not a JSON object")
    row: Row = {}
    for key in _TEXT:
        value = doc.get(key, "")
        if not isinstance(value, str):
            raise ImportError_(f"{key} must be a string")
        row[key] = value
    if not row["classification"]:
        raise ImportError_("classification is missing")
    row["host_type"] = str(doc.get("machine_type", doc.get("host_type", "")))
    for key, src in (
        ("severity", "severity"),
        ("record_version", "record_version"),
        ("payload_version", "payload_format_version"),
    ):
        value = doc.get(src, 1)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31 - 1:
            raise ImportError_(f"{src} must be an integer")
        row[key] = value
    row["ts_capture"] = _epoch(doc, "ts_capture")
    row["ts_reception"] = _epoch(doc, "ts_reception")
    row["source"] = str(doc.get("source") or "import")[:32]
    row["external"] = bool(doc.get("external", False))
    row["tid"] = str(doc.get("tid") or "")
    row["attrs"] = doc.get("attrs")
    # Present (true) only on records stored flagged (docs/senders.md); kept as exported.
    row["sender_flagged"] = True if doc.get("sender_flagged") is True else None
    dedup = doc.get("dedup_key")
    row["dedup_key"] = dedup if isinstance(dedup, str) and 0 < len(dedup) <= 64 else None
    problem = unstorable_field(row)
    if problem is not None:
        raise ImportError_(problem)
    return row
