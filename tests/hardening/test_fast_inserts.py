"""The multi-row insert paths (pg_insert, sqlite_insert) return ids in input order."""

from __future__ import annotations

import time

from sqlalchemy import select

from downlink.sources.clearlinux.wire import validate
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


def test_awkward_text_survives_the_bulk_paths(store: Store) -> None:
    # COPY's text format and the rollups' JSON recordsets both escape; check the round
    # trip with tabs, newlines, backslashes, quotes and non-ASCII in every kind of column.
    from downlink.sources.clearlinux.tables import rollup_daily

    rows = _rows(3)
    odd = 'tab\there\nnew "line" \\N back\\slash, ünïcödé ✓ \r end'
    for i, row in enumerate(rows):
        row["payload"] = f"{odd} {i}"
        row["host_type"] = f'{odd}|"vendor"\\|{i}'
        row["attrs"] = {"note": odd, "n": i}
    stored = store.run_write(insert_records, rows)
    ids = [r["id"] for r in stored]

    def load(conn: object) -> list[tuple[object, ...]]:
        found = conn.execute(  # type: ignore[attr-defined]
            select(records.c.payload, records.c.host_type, records.c.attrs)
            .where(records.c.id.in_(ids))
            .order_by(records.c.id)
        )
        return [tuple(r) for r in found]

    assert store.run(load) == [(r["payload"], r["host_type"], r["attrs"]) for r in rows]
    from downlink.testing.consumers import catch_up

    store.run_write(insert_records, _rows(1))
    more = _rows(2)
    for row in more:
        row["host_type"] = f"{odd}|x"
    store.run_write(insert_records, more)
    catch_up(store)  # the rollups
    hosts = store.run(
        lambda c: {
            h: n for h, n in c.execute(select(rollup_daily.c.host_type, rollup_daily.c.count))
        }
    )
    assert hosts[f"{odd}|x"] == 2


def test_retransmissions_come_back_as_sqlalchemy_reads_them(store: Store) -> None:
    # The dedup lookup reads through the DB-API (no SQLAlchemy types): a stored record
    # answered again must carry the same Python values as a SQLAlchemy read of it
    # (booleans, decoded JSON, floats), on both databases.
    rows = _rows(4)
    rows[1]["sender_flagged"] = True
    rows[2]["attrs"] = "a JSON string"
    first = store.run_write(insert_records, rows)
    again = store.run_write(insert_records, [dict(r) for r in rows])
    assert [r["duplicate"] for r in again] == [True] * 4

    def load(conn: object) -> dict[int, dict[str, object]]:
        found = conn.execute(select(records))  # type: ignore[attr-defined]
        return {int(r["id"]): dict(r) for r in found.mappings()}

    in_db = store.run(load)
    for before, stored in zip(first, again, strict=True):
        assert stored["id"] == before["id"]
        expected = in_db[stored["id"]]
        assert {k: stored[k] for k in expected} == expected
        assert type(stored["external"]) is bool
