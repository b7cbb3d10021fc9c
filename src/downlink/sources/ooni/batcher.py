"""Group commit for submissions: many measurements, one transaction, one fsync.

Each submission handler awaits :meth:`LogBatcher.add`; one task per event loop takes
everything waiting (up to ``max_rows``), inserts it in one ``admin_write`` and wakes
the handlers once the commit returned. While a commit is in flight the next batch
gathers, so under load a commit serves many submissions; alone, a submission waits for
its own commit only. A batch the database refuses is retried row by row, so one bad row
cannot fail the others; a database error reaches every waiting handler as
:class:`~downlink.store.writer.StoreUnavailable` (answered 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from downlink.sources.ooni.tables import measurements
from downlink.store.database import Store
from downlink.store.writer import StoreUnavailable


def insert_rows(conn: Connection, rows: list[Mapping[str, Any]]) -> None:
    """Append rows to the log in one statement."""
    conn.execute(measurements.insert(), rows)


class LogBatcher:
    """Batches log inserts of one event loop."""

    def __init__(self, store: Store, max_rows: int = 256) -> None:
        self.store = store
        self.max_rows = max_rows
        self._pending: list[tuple[Mapping[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, row: Mapping[str, Any]) -> None:
        """Return once ``row`` is committed; StoreUnavailable if the database failed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_rows]
            del self._pending[: self.max_rows]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Mapping[str, Any], asyncio.Future[None]]]) -> None:
        rows = [row for row, _ in batch]
        try:
            await self.store.admin_write(insert_rows, rows)
        except IntegrityError:
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item])
                return
            # The same uid (same bytes in the same microsecond) is already stored.
            _settle(batch, None)
        except DBAPIError as exc:
            _settle(batch, StoreUnavailable(str(exc.orig)))
        except StoreUnavailable as exc:
            _settle(batch, exc)
        except Exception as exc:  # noqa: BLE001 - every waiting handler must wake
            _settle(batch, exc)
        else:
            _settle(batch, None)


def _settle(batch: list[tuple[Mapping[str, Any], asyncio.Future[None]]],
            error: BaseException | None) -> None:
    for _row, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
