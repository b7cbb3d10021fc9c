"""The multi-row insert paths (pg_insert, sqlite_insert) return ids in input order."""

from __future__ import annotations

import time

from sqlalchemy import select

from downlink.ingest.clearlinux import validate
from downlink.store.database import Store
from downlink.store.inserts import insert_records
from downlink.store.tables import records
from tests.hardening.records import TID, v3_record


def _rows(n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        rec = v3_record(payload=f"row {i}")
        payload = rec.pop("payload").encode()
        rec["x_telemetry_tid"] = TID
        row = validate(rec, payload, allowed_tids=[TID], received_at=time.time())
        row["attrs"] = {"i": i, "tags": ["a", i]} if i % 3 == 0 else None
        out.append(row)
    return out


def test_ids_follow_input_order_across_chunks(store: Store) -> None:
    rows = _rows(2500)  # more than one SQLite chunk
    rows.insert(10, dict(rows[3]))  # a retransmission inside the batch
    stored = store.run_write(insert_records, rows)
    assert len(stored) == len(rows)
    assert stored[10]["duplicate"] and stored[10]["id"] == stored[3]["id"]
    fresh = [r for r in stored if not r["duplicate"]]
    assert [r["id"] for r in fresh] == sorted(r["id"] for r in fresh)

    def load(conn: object) -> dict[int, tuple[str, object]]:
        found = conn.execute(select(records.c.id, records.c.payload, records.c.attrs))  # type: ignore[attr-defined]
        return {int(i): (p, a) for i, p, a in found}

    in_db = store.run(load)
    assert len(in_db) == 2500
    for row in fresh:
        assert in_db[row["id"]] == (row["payload"], row["attrs"])
