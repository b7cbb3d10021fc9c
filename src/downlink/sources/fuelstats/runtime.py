"""The source's own background work in a server process: delivering failure reports.

The core runs the failure consumer (``Source.consumers``) and the refilter job
(``Source.job_kinds``); what stays here is the network side, which must not run inside
a database transaction: a loop, started by the app's lifespan (``extra["lifespan"]``),
that sends the due ``fuel_outbox`` rows (:mod:`.notify`) every ``POLL_S`` or at once
when :meth:`Runtime.wake` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from anyio import to_thread

from downlink.sources.fuelstats import notify, refilter
from downlink.sources.fuelstats.config import FuelSettings
from downlink.sources.fuelstats.context import FuelContext, context_of_app
from downlink.store import jobs
from downlink.store.database import Store

log = logging.getLogger(__name__)

POLL_S = 1.0


class Runtime:
    """The delivery loop of one server process."""

    def __init__(self, store: Store, ctx: FuelContext) -> None:
        self.store = store
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def settings(self) -> FuelSettings:
        """The source's settings."""
        return self.ctx.settings

    def wake(self) -> None:
        """Look for due notifications now."""
        self._wake.set()

    def start(self) -> None:
        """Start the loop on the running event loop."""
        self._http = httpx.AsyncClient(timeout=10)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop after the delivery in flight (a row taken and not recorded is re-sent
        by whichever process finds its lease expired)."""
        self._stopping = True
        self.wake()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=15)
            self._task.cancel()
            self._task = None
        if self._http is not None:
            await self._http.aclose()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                busy = await self.deliver()
            except Exception as exc:  # noqa: BLE001 - the database may be down; retry later
                log.warning("fuel-stats deliveries: %s", exc)
                busy = False
            if busy or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def deliver(self) -> bool:
        """Send the due notifications; True if there were some."""
        taken = await self.store.admin_write(notify.take_due, notify.now())
        for due in taken:
            error = await self._send(due)
            await self.store.admin_write(notify.record, due, error, self.settings, notify.now())
            if error is not None:
                log.warning("fuel failure %s via %s: %s", due.failure_key, due.channel, error)
        return bool(taken)

    async def _send(self, due: notify.Due) -> str | None:
        if due.channel == "webhook" and self.settings.webhook_url and self._http is not None:
            return await notify.send_webhook(self._http, self.settings.webhook_url, due)
        if due.channel == "email" and self.settings.smtp_host:
            return await to_thread.run_sync(notify.send_mail, self.settings, due)
        return f"channel {due.channel} is no longer configured"


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the delivery loop for the life of the app; queue a recount if one is due."""
    store = app.state.store
    try:
        if await store.read_primary(refilter.needs_recount):
            await store.admin_write(jobs.enqueue, refilter.RECOUNT)
            log.info("fuel-stats counts are empty: recount queued")
    except Exception as exc:  # noqa: BLE001 - the database may be down: next start
        log.warning("fuel-stats recount check failed: %s", exc)
    runtime = Runtime(app.state.store, context_of_app(app))
    app.state.fuelstats_runtime = runtime
    runtime.start()
    try:
        yield
    finally:
        await runtime.stop()
