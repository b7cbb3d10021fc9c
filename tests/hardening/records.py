"""Build valid Clear Linux records (v3 JSON shape and v2 headers) for hardening tests."""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import create_engine, select

from downlink.store.tables import records

TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"


def v3_record(payload: str = "hello", **changes: Any) -> dict[str, Any]:
    """A valid record format 4 record as the 2.4.x client sends it (unique event id)."""
    record: dict[str, Any] = {
        "record_format_version": "4",
        "classification": "org.clearlinux/hello/world",
        "severity": "1",
        "machine_id": secrets.token_hex(16),
        "creation_timestamp": str(int(time.time())),
        "arch": "x86_64",
        "host_type": "no_sv_file|no_pn_file|no_pvr_file",
        "build": "12",
        "kernel_version": "6.18.44-fc-v657",
        "payload_format_version": "1",
        "system_name": "debian",
        "board_name": "no_bn_file|no_bv_file",
        "cpu_model": "Intel(R)",
        "bios_version": "no_bv_file",
        "event_id": secrets.token_hex(16),
        "payload": payload,
    }
    record.update(changes)
    return record


def v2_headers(record: dict[str, Any]) -> dict[str, str]:
    """The same record as 2.3.x client headers (the payload goes in the body)."""
    headers = {k: str(v) for k, v in record.items() if k != "payload"}
    headers["X-Telemetry-TID"] = TID
    headers["Content-Type"] = "application/text"
    return headers


def stored_rows(db_url: str) -> list[dict[str, Any]]:
    """Every stored record, oldest first."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(records).order_by(records.c.id)).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()
