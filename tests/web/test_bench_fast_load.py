"""bench/dashboards.py's fast load stores exactly what the processor path stores."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Connection, select

from downlink.settings import Settings
from downlink.sources.clearlinux.rollups import ROLLUP_TABLES
from downlink.sources.clearlinux.tables import guilty
from downlink.store.database import Store
from downlink.testing.consumers import catch_up

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dashboards.py"
Snapshot = dict[str, list[tuple[object, ...]]]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_dashboards", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def second_url(new_database: Callable[[str], str]) -> str:
    """Another fresh database of the same kind as ``db_url``."""
    return new_database("fast")


def _snapshot(url: str) -> Snapshot:
    def read(conn: Connection) -> Snapshot:
        out: Snapshot = {}
        for table in (*ROLLUP_TABLES, guilty):
            out[table.name] = sorted(tuple(r) for r in conn.execute(select(table)))
        out["records"] = sorted(
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT id, dedup_key, classification, guilty_id, ts_reception FROM records"
            )
        )
        out["indexes"] = sorted((name,) for name, _ in bench_module._secondary_indexes(conn))
        return out

    store = Store(Settings(database_url=url))
    try:
        return store.run(read)
    finally:
        store.close()


bench_module = _bench()


def test_fast_load_gives_the_same_records_groups_and_rollups(db_url: str, second_url: str) -> None:
    now = time.time()
    # Batches of 1,000 against the normal path's 5,000: rollups must not depend on them.
    bench_module.load(db_url, 4000, seed=3, now=now)
    bench_module.fast_load(second_url, 4000, seed=3, now=now, batch=1000)
    normal, fast = _snapshot(db_url), _snapshot(second_url)
    assert len(normal["records"]) == 4000
    assert normal["guilty"] and normal["rollup_guilty"] and normal["rollup_mce"]
    assert len(normal["indexes"]) >= 8
    for name in normal:
        assert fast[name] == normal[name], name
    for url in (db_url, second_url):  # the consumers start after the loaded records
        store = Store(Settings(database_url=url))
        try:
            assert catch_up(store) == 0
        finally:
            store.close()
