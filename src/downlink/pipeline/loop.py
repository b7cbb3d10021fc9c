"""The one background loop of a server process's machinery: poll, work, wait, stop.

The consumer runner (:class:`~downlink.pipeline.consumers.ConsumerRunner`) and the
job runner (:class:`~downlink.pipeline.jobrunner.JobRunner`) are both a
:class:`PollingLoop`: a task on the server's event loop that calls ``run_once()``
again at once while it reports work done (a full batch, a job run), else waits
``poll_s`` seconds or until :meth:`PollingLoop.wake` (callable from any thread: the
writer's commit hook, a handler that queued a job). A round that raises (the database
is down) is logged and retried after ``poll_s``, doubling up to ``retry_max_s`` while
it keeps failing, so an outage costs one attempt per interval, not a busy loop.
:meth:`PollingLoop.stop` lets the work in flight end (it commits or rolls back on its
own) and cancels it after ``timeout``. What "work" means, and how one unit of it is
claimed (a consumer's cursor row, a job's row), is the subclass's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class PollingLoop:
    """A background task calling :meth:`run_once` until stopped (see the module)."""

    name = "loop"

    def __init__(self, *, poll_s: float, retry_max_s: float = 60.0) -> None:
        self.poll_s = poll_s
        self.retry_max_s = max(retry_max_s, poll_s)
        self._wake: asyncio.Event | None = None  # made on the loop that runs the task
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def enabled(self) -> bool:
        """Whether :meth:`start` starts anything (polling on, something to do)."""
        return self.poll_s > 0

    def start(self) -> None:
        """Start on the running event loop (nothing to do unless :meth:`enabled`)."""
        if self._task is not None or not self.enabled():
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop_ref = asyncio.get_running_loop()
        self._task = self._loop_ref.create_task(self._run())

    def wake(self, *_args: object) -> None:
        """Look for work now; callable from any thread."""
        loop, event = self._loop_ref, self._wake
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            loop.call_soon_threadsafe(event.set)

    def alive(self) -> bool:
        """Whether the task is running (started, not stopped, not ended by an error)."""
        return self._task is not None and not self._task.done()

    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (work in progress should wind down)."""
        return self._stopping

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop after the work in flight (cancelled after ``timeout`` seconds)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        finished, _ = await asyncio.wait({task}, timeout=timeout)
        if not finished:
            # A long transaction: it commits or rolls back on its own, and the work
            # resumes from what was committed (a job once its heartbeat is stale).
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def prepare(self) -> None:
        """Run once before the first round, retried until it succeeds (subclasses)."""

    async def run_once(self) -> bool:
        """One round of work; True when more is waiting (go again at once)."""
        raise NotImplementedError

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        failures = 0
        prepared = False
        while not self._stopping:
            wake.clear()
            try:
                if not prepared:
                    await self.prepare()
                    prepared = True
                busy = await self.run_once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the database may be down; retry
                log.warning("%s: %s", self.name, exc)
                busy = False
                failures += 1
            if busy or self._stopping:
                continue
            wait = self.poll_s if not failures else min(
                self.retry_max_s, self.poll_s * 2 ** (failures - 1)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
