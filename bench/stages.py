"""CPU per stage of the ingest path, measured by timing the functions that do each one.

:func:`instrument` wraps the functions below with a per-thread CPU clock (user plus
system time of the calling thread, ``time.thread_time``), so a stage's figure is the CPU
its thread spent inside it: waiting for the disk or the interpreter lock is not
counted. Each wrapped call costs about 1 us of its own, included in its stage.

Stages (what is left over on each thread is named for what runs there):

* ``parse``: reading the fields and validating the record (the collector's ``_row``,
  the bulk endpoint's ``_check``);
* ``envelope``: the store's text rule on each row and the envelopes
  (``unstorable_field``, ``wrap``);
* ``response``: the stored record's JSON (``clear_json``);
* ``HTTP, guards, asyncio``: the rest of the event loop's thread (the request limits
  and rate limits, reading the body, queueing to the writer and waking up again,
  sending the answer; with HTTP through uvicorn, not in process, its parser too);
* ``SQL``: the sink's statements in the writer's transaction (dedup lookup, insert);
* ``commit``: the rest of the transaction (BEGIN, COMMIT: the database writing its
  pages; the fsync wait itself is not CPU);
* ``writer queue``: the rest of the writer thread (taking batches off the queue,
  answering the waiting handlers, metrics).

Consumers (the post-ack crash grouping and rollups) run on worker threads on
PostgreSQL and on the writer thread on SQLite (``Writer.call``): measure with them off
to see the request path alone.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STAGES: tuple[str, ...] = (
    "parse",
    "envelope",
    "response",
    "HTTP, guards, asyncio",
    "SQL",
    "commit",
    "writer queue",
)

_spent: Counter[str] = Counter()


_cpu = time.thread_time  # the calling thread's CPU (user + system), to the nanosecond


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = _cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = _cpu() - started
            _spent[label] += spent
            if threading.current_thread() is threading.main_thread():
                _spent[label + "@loop"] += spent

    return timed


@contextmanager
def instrument() -> Iterator[Counter[str]]:
    """Wrap the stage functions for the duration (the counter holds CPU seconds)."""
    from downlink.sources.clearlinux import bulk, collector
    from downlink.store import database, sinks, writer

    targets: list[tuple[Any, str, str]] = [
        (collector, "_row", "parse"),
        (bulk, "_check", "parse"),
        (database, "unstorable_field", "envelope"),
        (database, "wrap", "envelope"),
        (collector, "clear_json", "response"),
        (writer.Writer, "_transaction", "transaction"),
        (sinks.RecordsSink, "write", "SQL"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
    for owner, name, label in targets:
        setattr(owner, name, _timed(label, getattr(owner, name)))
    _spent.clear()
    try:
        yield _spent
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def reset() -> None:
    """Start counting again (after a warm-up)."""
    _spent.clear()


def split(spent: Counter[str], event_loop_s: float, writer_s: float) -> dict[str, float]:
    """CPU seconds per stage, from the timed functions and the totals of the event
    loop's thread and the writer thread (``/proc``)."""
    handled = spent["parse@loop"] + spent["envelope@loop"] + spent["response@loop"]
    commit = spent["transaction"] - spent["SQL"]
    return {
        "parse": spent["parse"],
        "envelope": spent["envelope"],
        "response": spent["response"],
        "HTTP, guards, asyncio": max(0.0, event_loop_s - handled),
        "SQL": spent["SQL"],
        "commit": commit,
        "writer queue": max(0.0, writer_s - spent["transaction"]),
    }
