"""The JSON shape of a stored record, as the Clear Linux collector and API return it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

TS_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def format_ts(epoch: float | None) -> str | None:
    """Format epoch seconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if epoch is None:
        return None
    return _format_second(int(epoch))


@lru_cache(maxsize=4096)
def _format_second(second: int) -> str:
    # Under load most records share the current second; strftime is ~2 us a call.
    return time.strftime(TS_FORMAT, time.gmtime(second))


def clear_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return a record in the field names of telemetrics-backend (plus a few more).

    ``record_version`` is the 2018+ name and ``record_format_version`` the one the
    original tests and README use; both are emitted. ``system_name``,
    ``payload_format_version`` and ``source`` are Downlink additions, and so is
    ``sender_flagged``, present (true) only on a record whose machine id did not match
    its binding (docs/senders.md).
    """
    out = {
        "arch": row["arch"],
        "bios_version": row["bios_version"],
        "board_name": row["board_name"],
        "build": row["build"],
        "classification": row["classification"],
        "cpu_model": row["cpu_model"],
        "event_id": row["event_id"],
        "external": bool(row["external"]),
        "id": row["id"],
        "kernel_version": row["kernel_version"],
        "machine_id": row["machine_id"],
        "machine_type": row["host_type"],
        "payload": row["payload"],
        "payload_format_version": row["payload_version"],
        "record_format_version": row["record_version"],
        "record_version": row["record_version"],
        "severity": row["severity"],
        "source": row["source"],
        "system_name": row["system_name"],
        "ts_capture": format_ts(row["ts_capture"]),
        "ts_reception": format_ts(row["ts_reception"]),
    }
    if row.get("sender_flagged"):
        out["sender_flagged"] = True
    return out
