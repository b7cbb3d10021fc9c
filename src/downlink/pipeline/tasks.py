"""The sources' periodic background tasks (``Source.tasks``): leased, fenced, retried.

Every process that runs the consumers (each ``downlink serve`` worker, or ``downlink
consume``) runs a :class:`TaskRunner`: each task, every ``Task.every(settings)``
seconds, is claimed in the ``tasks`` table (a lease of ``DOWNLINK_TASK_LEASE_S``, 15 s
by default, one conditional ``UPDATE``: one process at a time), then run in a worker
thread while the runner renews the lease every third of it. Each write the task makes
(``TaskContext.write``) first renews the lease *in its own transaction* and fails
with :class:`TaskLost` when another process holds it: a process paused past its lease
can no longer commit anything, so a unit of work is committed by the holder alone. A process killed
half-way keeps the lease until it lapses; then another process (or the restarted one)
claims the task and does the unfinished unit again (units are idempotent: OONI's
archive of an hour is a function of its measurements).

A run that raises (storage down, a missing bucket, the database away) is kept on the
task's row (``error``, ``failures``), shown on ``/consumers``, counted in
``downlink_task_failures_total``, and retried after 0.5 s, doubling up to
``DOWNLINK_CONSUMER_RETRY_MAX_S`` (and never later than the task's period); the
consumers and ingestion are not concerned. :func:`run_here` runs a task once in the
calling process with the same lease (a source's command, such as ``downlink ooni
archive``, safe beside running servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from anyio import from_thread, to_thread
from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from downlink.settings import Settings
from downlink.sources.base import Source, Task, TaskContext
from downlink.store.tables import tasks

log = logging.getLogger(__name__)

LEASE_S = 15.0  # the default of DOWNLINK_TASK_LEASE_S
ERROR_MAX = 2000
T = TypeVar("T")


class TaskLost(RuntimeError):
    """Another process holds the task's lease: this run must not commit anything."""


class TaskBusy(RuntimeError):
    """The task is running in another process (``run_here`` could not claim it)."""


def owner_token() -> str:
    """A claim's token: unique per run."""
    return uuid.uuid4().hex


def claim(conn: Connection, name: str, source: str, owner: str, now: float,
          lease_s: float = LEASE_S) -> bool:
    """Take the task's lease for ``lease_s`` unless another process holds it."""
    exists = conn.execute(select(tasks.c.name).where(tasks.c.name == name)).first()
    if exists is None:
        dialect = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        new = conn.execute(dialect(tasks).values(
            name=name, source=source, owner=owner, claimed_until=now + lease_s,
        ).on_conflict_do_nothing(index_elements=[tasks.c.name]).returning(tasks.c.name))
        if new.first() is not None:
            return True
    taken = conn.execute(update(tasks).where(
        tasks.c.name == name,
        or_(tasks.c.claimed_until.is_(None), tasks.c.claimed_until < now),
    ).values(owner=owner, claimed_until=now + lease_s, source=source))
    return bool(taken.rowcount == 1)


def hold(conn: Connection, name: str, owner: str, now: float, lease_s: float = LEASE_S) -> None:
    """Renew this run's lease in ``conn``'s transaction; :class:`TaskLost` if it is gone."""
    kept = conn.execute(update(tasks).where(
        tasks.c.name == name, tasks.c.owner == owner, tasks.c.claimed_until >= now,
    ).values(claimed_until=now + lease_s))
    if kept.rowcount != 1:
        raise TaskLost(f"task {name}: the lease ran out and another process may hold it")


def fenced(conn: Connection, name: str, owner: str, lease_s: float,
           fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` in the transaction that renews the lease (the holder only)."""
    hold(conn, name, owner, time.time(), lease_s)
    return fn(conn, *args)


def finish(conn: Connection, name: str, owner: str, done: int, now: float) -> None:
    """Record a successful run and release the lease."""
    conn.execute(update(tasks).where(tasks.c.name == name, tasks.c.owner == owner).values(
        owner=None, claimed_until=None, ran_at=now, done=done, total=tasks.c.total + done,
        failures=0, error=None,
    ))


def failed(conn: Connection, name: str, owner: str, message: str, now: float) -> None:
    """Record a failed run (its message, one more failure in a row); release the lease."""
    conn.execute(update(tasks).where(tasks.c.name == name, tasks.c.owner == owner).values(
        owner=None, claimed_until=None, failures=tasks.c.failures + 1,
        error=message[:ERROR_MAX], error_at=now,
    ))


def status(conn: Connection, bound: list[tuple[Source, Task]], settings: Settings,
           now: float | None = None) -> list[dict[str, Any]]:
    """Each declared task's state for ``/consumers``: its last run, error and progress."""
    at = time.time() if now is None else now
    rows = {r.name: r for r in conn.execute(select(tasks))}
    out: list[dict[str, Any]] = []
    for source, task in bound:
        row = rows.get(task.name)
        every = task.every(settings)
        out.append({
            "name": task.name,
            "source": source.name,
            "every_s": every,
            "running": bool(row is not None and row.claimed_until is not None
                            and row.claimed_until >= at),
            "ran_at": None if row is None else row.ran_at,
            "done": 0 if row is None else int(row.done),
            "total": 0 if row is None else int(row.total),
            "failures": 0 if row is None else int(row.failures),
            "error": None if row is None else row.error,
            "error_at": None if row is None else row.error_at,
            "progress": "" if task.describe is None else task.describe(conn, settings, at),
        })
    return out


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_here(engine: Engine, source: str, name: str, settings: Settings,
             body: Callable[[TaskContext], T], units: Callable[[T], int]) -> T:
    """Run ``body`` as one run of the task ``name`` (of ``source``) in this process (a
    command's catch-up run), under the task's lease, recording its outcome like the
    runner does (``units(result)``: what it did); :class:`TaskBusy` when another
    process holds the lease."""
    owner = owner_token()
    lease_s = settings.task_lease_s

    def read(fn: Callable[..., Any], *args: Any) -> Any:
        with engine.connect() as conn:
            return fn(conn, *args)

    def write(fn: Callable[..., Any], *args: Any) -> Any:
        with engine.begin() as conn:
            return fenced(conn, name, owner, lease_s, fn, *args)

    with engine.begin() as conn:
        if not claim(conn, name, source, owner, time.time(), lease_s):
            raise TaskBusy(f"task {name} is running in another process; try again later")
    try:
        result = body(TaskContext(read, write, settings, lambda: False))
    except BaseException as exc:
        with engine.begin() as conn:
            failed(conn, name, owner, _message(exc), time.time())
        raise
    with engine.begin() as conn:
        finish(conn, name, owner, units(result), time.time())
    return result


@dataclass
class _Loop:
    source: Source
    task: Task
    every_s: float
    failures: int = 0
    asyncio_task: asyncio.Task[None] | None = None


class TaskRunner:
    """Runs the sources' tasks in one process (``downlink.background.Background``)."""

    def __init__(self, store: Any, settings: Settings,
                 bound: list[tuple[Source, Task]], *, retry_max_s: float = 60.0) -> None:
        self.store = store
        self.settings = settings
        self.retry_max_s = retry_max_s
        self.loops = [_Loop(s, t, t.every(settings)) for s, t in bound]
        self._stopping = asyncio.Event()
        self._halt = threading.Event()

    def enabled(self) -> bool:
        """Whether any task runs in this configuration."""
        return any(loop.every_s > 0 for loop in self.loops)

    def alive(self) -> bool:
        """Whether every task that should run has its loop running."""
        return all(loop.asyncio_task is not None and not loop.asyncio_task.done()
                   for loop in self.loops if loop.every_s > 0)

    def start(self) -> None:
        """Start one loop per enabled task on the running event loop."""
        self._stopping = asyncio.Event()
        self._halt.clear()
        for loop in self.loops:
            if loop.every_s > 0 and loop.asyncio_task is None:
                loop.asyncio_task = asyncio.get_running_loop().create_task(self._run(loop))

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop after the unit in flight (a unit killed half-way is simply done again)."""
        self._stopping.set()
        self._halt.set()
        running = {loop.asyncio_task for loop in self.loops if loop.asyncio_task is not None}
        for loop in self.loops:
            loop.asyncio_task = None
        if not running:
            return
        _finished, pending = await asyncio.wait(running, timeout=timeout)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, loop: _Loop) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once(loop)
                loop.failures = 0
                wait = loop.every_s
            except Exception as exc:  # noqa: BLE001 - storage or database down: retry
                loop.failures += 1
                log.warning("task %s: %s", loop.task.name, exc)
                backoff = 0.5 * 2 ** min(loop.failures - 1, 30)
                wait = min(self.retry_max_s, backoff, loop.every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def run_once(self, loop: _Loop) -> int | None:
        """One run of the task if this process can claim it (None when another has it)."""
        store, task = self.store, loop.task
        owner = owner_token()
        lease_s = self.settings.task_lease_s
        if not await store.admin_write(
            claim, task.name, loop.source.name, owner, time.time(), lease_s
        ):
            return None
        lost = threading.Event()

        def write(fn: Callable[..., Any], *args: Any) -> Any:
            try:
                return from_thread.run(
                    store.admin_write, fenced, task.name, owner, lease_s, fn, *args
                )
            except TaskLost:
                lost.set()
                raise

        ctx = TaskContext(
            lambda fn, *args: store.run(fn, *args), write, self.settings,
            lambda: self._halt.is_set() or lost.is_set(),
        )
        work = asyncio.ensure_future(to_thread.run_sync(task.run, ctx))
        try:
            while True:
                finished, _ = await asyncio.wait({work}, timeout=lease_s / 3)
                if finished:
                    break
                if lost.is_set():
                    continue
                try:
                    await store.admin_write(hold, task.name, owner, time.time(), lease_s)
                except TaskLost:
                    lost.set()
                except Exception as exc:  # noqa: BLE001 - the database may be away a moment
                    log.warning("task %s: cannot renew its lease: %s", task.name, exc)
            done = work.result()
        except Exception as exc:
            store.metrics.task_failures.labels(task.name).inc()
            if not lost.is_set():
                with contextlib.suppress(Exception):
                    await store.admin_write(failed, task.name, owner, _message(exc), time.time())
            raise
        if not lost.is_set():
            await store.admin_write(finish, task.name, owner, done, time.time())
        return done
