"""The group-commit writer: batching, ordering, backpressure and dedup."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Connection

from downlink.metrics import Metrics
from downlink.settings import Settings
from downlink.sources.clearlinux.wire import fields_from_headers, validate
from downlink.store.database import Store
from downlink.store.engine import make_engine
from downlink.store.envelope import Envelope
from downlink.store.queries.records import RecordFilter, count_records
from downlink.store.sinks import RecordsSink
from downlink.store.writer import QueueFull, Writer
from tests.wire import TID, v2_headers


def row(**overrides: str | None) -> dict[str, Any]:
    fields = fields_from_headers(v2_headers(dict(overrides)).items())
    return validate(fields, b"payload", allowed_tids=[TID], received_at=time.time())


def test_concurrent_writes_are_grouped_and_each_gets_its_own_row(store: Store) -> None:
    async def main() -> list[list[Envelope]]:
        return await asyncio.gather(*(store.write([row()]) for _ in range(200)))

    results = asyncio.run(main())
    ids = [r[0].id for r in results]
    assert len(set(ids)) == 200
    assert store.run(count_records, RecordFilter()) == 200
    batches = store.metrics.batch_size.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    assert count < 200, "no two records shared a commit"


def test_duplicates_in_one_batch_and_across_batches(store: Store) -> None:
    one = row()
    twin = dict(one)

    async def main() -> list[Envelope]:
        return await store.write([one, twin])

    first, second = asyncio.run(main())
    assert first.id == second.id and second.duplicate and not first.duplicate
    assert (first.status, second.status) == ("added", "duplicate")
    assert "duplicate" not in first.row and first.row["id"] == first.id
    (third,) = asyncio.run(store.write([dict(one)]))
    assert third.id == first.id and third.duplicate
    assert store.run(count_records, RecordFilter()) == 1


def test_queue_full_is_raised_instead_of_growing(settings: Settings) -> None:
    gate = threading.Event()

    def slow(_conn: Connection, _rows: list[dict[str, Any]]) -> None:
        gate.wait(10)

    s = Store(settings.replace(batch_max=1, queue_max=3), processors=[slow])
    s.start()
    try:

        async def main() -> None:
            pending = [asyncio.ensure_future(s.write([row()])) for _ in range(3)]
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFull):
                await s.write([row()])
            gate.set()
            done = await asyncio.gather(*pending)
            assert len({d[0].id for d in done}) == 3

        asyncio.run(main())
    finally:
        gate.set()
        s.close()


def test_stop_commits_what_is_queued(settings: Settings) -> None:
    s = Store(settings)
    s.migrate()
    w = Writer(make_engine(settings, writer=True), Metrics(), batch_max=4, batch_wait=0.05)
    w.start()

    sink = RecordsSink()

    async def main() -> list[list[Envelope]]:
        tasks = [asyncio.ensure_future(w.write(sink, [Envelope(row())])) for _ in range(10)]
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, w.stop)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert len(results) == 10
    assert s.run(count_records, RecordFilter()) == 10
    s.close()


def test_a_poison_record_fails_alone_and_never_escapes_as_a_crash(settings: Settings) -> None:
    from downlink.store.writer import RecordsRefused

    def picky(_conn: Connection, rows: list[dict[str, Any]]) -> None:
        if any(r["payload"] == "poison" for r in rows):
            raise ValueError("processor bug")

    s = Store(settings.replace(batch_wait_ms=50.0), processors=[picky])
    s.start()
    try:
        good = [row() for _ in range(5)]
        bad = row()
        bad["payload"] = "poison"

        async def main() -> list[Any]:
            tasks = [s.write([r]) for r in good] + [s.write([bad])]
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(main())
        assert all(isinstance(r, list) and r[0].id for r in results[:5])
        # The store takes records (its probe goes in), so this one is refused, not a 503.
        assert isinstance(results[5], RecordsRefused)
        [refused] = results[5].results
        assert refused.id is None and refused.failed
        assert refused.refused is not None and "ValueError" in refused.refused
        assert refused.error is not None and "processor bug" in refused.error
        assert s.run(count_records, RecordFilter()) == 5
    finally:
        s.close()


def test_calls_run_on_the_writer_in_line_with_record_batches(store: Store) -> None:
    order: list[str] = []

    def note(conn: Connection, what: str) -> int:
        order.append(what)
        return int(conn.exec_driver_sql("SELECT count(*) FROM records").scalar_one())

    def boom(_conn: Connection) -> None:
        raise ValueError("refused by the admin function")

    async def main() -> tuple[list[Any], int]:
        first = asyncio.ensure_future(store.writer.write(store.records, [Envelope(row())]))
        await asyncio.sleep(0.05)  # the first batch is committed or in flight
        seen = await store.writer.call(note, "call")
        later = await asyncio.gather(
            *(store.writer.write(store.records, [Envelope(row())]) for _ in range(5))
        )
        with pytest.raises(ValueError, match="refused by the admin function"):
            await store.writer.call(boom)
        return [await first, *later], seen

    written, seen = asyncio.run(main())
    assert order == ["call"]
    assert seen == 1  # the call saw the record queued before it, committed
    assert store.run(count_records, RecordFilter()) == 6
    assert len(written) == 6
