"""Crash grouping at ingest and after "never guilty" edits, on both databases."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from downlink.sources.clearlinux.crashes import (
    add_to_blacklist,
    recompute_guilty,
    remove_from_blacklist,
)
from downlink.sources.clearlinux.tables import guilty
from downlink.store.database import Store
from downlink.store.tables import records
from downlink.testing.consumers import wait_caught_up
from tests.wire import load_capture, v2_headers


def _guilty_of(store: Store, record_id: int) -> tuple[str, str] | None:
    def q(conn):  # type: ignore[no-untyped-def]
        row = conn.execute(
            select(guilty.c.function, guilty.c.module)
            .select_from(records.join(guilty, guilty.c.id == records.c.guilty_id))
            .where(records.c.id == record_id)
        ).first()
        return None if row is None else (row[0], row[1])

    return store.run(q)


def test_crash_record_is_grouped_at_ingest_and_regrouped(
    client: TestClient, fixtures_dir: Path
) -> None:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    capture = load_capture(fixtures_dir / "clearlinux" / "v2-headers-crash.http")
    headers = v2_headers({"classification": "org.clearlinux/crash/clr", "severity": "3"})
    rid = client.post("/v2/collector", headers=headers, content=capture.body).json()["id"]
    wait_caught_up(client)  # grouped after the ack
    assert _guilty_of(store, rid) == ("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")

    hello = client.post("/v2/collector", headers=v2_headers(), content=capture.body).json()["id"]
    wait_caught_up(client)
    assert _guilty_of(store, hello) is None  # not a backtrace class

    assert store.run_write(add_to_blacklist, [("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")])
    assert store.run_write(recompute_guilty) == 1
    assert _guilty_of(store, rid) == ("__nanosleep()", "libc.so.6")

    # New records use the edited list at once.
    headers2 = v2_headers({"classification": "org.clearlinux/crash/clr", "severity": "3"})
    rid2 = client.post("/v2/collector", headers=headers2, content=capture.body).json()["id"]
    wait_caught_up(client)
    assert _guilty_of(store, rid2) == ("__nanosleep()", "libc.so.6")

    assert store.run_write(remove_from_blacklist, [("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")])
    assert store.run_write(recompute_guilty) == 2
    assert _guilty_of(store, rid2) == ("clock_nanosleep@GLIBC_2.2.5()", "libc.so.6")
