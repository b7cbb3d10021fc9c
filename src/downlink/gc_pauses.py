"""The cyclic garbage collector in a long-running server: freeze startup, time pauses.

CPython's full (generation 2) collection scans every container object the process
holds. A started server holds about 170,000 (SQLAlchemy's metadata and compiled
statements, FastAPI's routes, the imported modules), so a full collection stopped
every thread for 60-200 ms of CPU (bench/ingest_cpu.py, docs/performance.md) while
requests waited, and when one fell inside a benchmark's window it added 12 us to every
record of a 20,000-record run.

:func:`freeze_after_startup` collects once and then moves everything alive into the
permanent generation (``gc.freeze``): later full collections scan only what was made
since, and the startup objects are still freed by reference counting as before (only
a frozen reference cycle that becomes garbage stays). It does so once per process: a
process that starts many apps in turn (a test run) freezes the first only, as
collecting its whole heap at every start cost a test run 45 s of CPU in 177 tests.
``DOWNLINK_GC_FREEZE=false`` turns it off.

:class:`PauseTimer` observes every collection's duration, by generation, into a
histogram (``downlink_gc_pause_seconds`` on ``/metrics``).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

GENERATIONS = ("0", "1", "2")


# The process that froze (a child forked after a freeze, by a fork server, freezes
# again: its collection walks only what was made since, the rest being frozen).
_frozen_by: int | None = None


def freeze_after_startup() -> int:
    """Collect, then freeze what is alive, unless this process froze before; the
    number of objects frozen in all (0: none, this process had frozen already)."""
    global _frozen_by
    if _frozen_by == os.getpid():
        return 0
    gc.collect()
    gc.freeze()
    _frozen_by = os.getpid()
    return gc.get_freeze_count()


class PauseTimer:
    """Times each collection of this process into a histogram, while installed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "downlink_gc_pause_seconds",
            "Cyclic garbage collections of this process (every thread waits), by generation.",
            ["generation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self._by_generation = [self.histogram.labels(g) for g in GENERATIONS]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def totals(self) -> tuple[float, tuple[int, int, int]]:
        """Seconds of every collection observed, and how many of each generation."""
        seconds = 0.0
        counts = [0, 0, 0]
        for metric in self.histogram.collect():
            for sample in metric.samples:
                generation = int(sample.labels["generation"])
                if sample.name.endswith("_sum"):
                    seconds += sample.value
                elif sample.name.endswith("_count"):
                    counts[generation] = int(sample.value)
        return seconds, (counts[0], counts[1], counts[2])


@contextmanager
def after_startup(timer: PauseTimer, freeze: bool) -> Iterator[None]:
    """For the life of a started process: ``timer`` installed, and the startup frozen
    first when ``freeze`` (``DOWNLINK_GC_FREEZE``)."""
    timer.install()
    if freeze and (frozen := freeze_after_startup()):
        log.info("froze %d objects alive after startup (DOWNLINK_GC_FREEZE)", frozen)
    try:
        yield
    finally:
        timer.remove()
