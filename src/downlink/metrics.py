"""Prometheus metrics of one server, in a registry of its own (no process globals).

With several worker processes (``downlink serve --workers N``) the parent points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start; each
worker's values then live in files there, and :func:`exposition` reads all of them, so
one scrape of ``/metrics`` sums every worker (gauges of live workers: ``livesum``).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from downlink.gc_pauses import PauseTimer
from downlink.sources.registry import Sources

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Return the text exposition (and its content type) of this server's metrics.

    All worker processes' values in multiprocess mode, else ``registry``'s.
    """
    if os.environ.get(MULTIPROC_ENV):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return generate_latest(combined), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Metrics:
    """Every metric Downlink exports at /metrics.

    ``sources`` (the registry's loaded sources) each register theirs with
    ``Source.metrics(registry)``; what it returns is kept in :attr:`by_source` under the
    source's name, for the source's own code to use.
    """

    def __init__(self, sources: Sources | None = None) -> None:
        self.registry = CollectorRegistry()
        self.by_source: dict[str, Any] = {}
        r = self.registry
        self.gc = PauseTimer(r)
        self.received = Counter(
            "downlink_records_received", "Records received, by source.", ["source"], registry=r
        )
        self.accepted = Counter(
            "downlink_records_accepted",
            "Records committed to the store, by source.",
            ["source"],
            registry=r,
        )
        self.duplicates = Counter(
            "downlink_records_duplicate",
            "Retransmitted records answered from the store.",
            ["source"],
            registry=r,
        )
        self.rejected = Counter(
            "downlink_records_rejected",
            "Records refused, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "downlink_writer_batch_records",
            "Records per group-commit transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "downlink_writer_commit_seconds",
            "Time to write and commit one batch.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.queue_depth = Gauge(
            "downlink_writer_queue_records",
            "Records waiting for the writer.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.writer_errors = Counter(
            "downlink_writer_errors",
            "Batches that failed to commit, by error type.",
            ["error"],
            registry=r,
        )
        self.spooled = Counter(
            "downlink_spool_records_in",
            "Records written to the local spool while the database was unavailable.",
            registry=r,
        )
        self.drained = Counter(
            "downlink_spool_records_out",
            "Spooled records moved into the database.",
            registry=r,
        )
        self.set_aside = Counter(
            "downlink_spool_records_set_aside",
            "Spooled records the database refused, moved to the spool's refused table.",
            registry=r,
        )
        # Read from the spool file (shared by every worker) when /metrics is scraped.
        self.spool_pending = Gauge(
            "downlink_spool_pending_records",
            "Records waiting in the spool for the database.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.spool_refused = Gauge(
            "downlink_spool_set_aside_records",
            "Records set aside in the spool's refused table (downlink spool list).",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.purged = Counter(
            "downlink_purged_records",
            "Records deleted by the retention purge, by source.",
            ["source"],
            registry=r,
        )
        self.purge_runs = Counter(
            "downlink_purge_runs",
            "Retention purge runs, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.db_bytes = Gauge(
            "downlink_database_bytes",
            "Size of the database in bytes (refreshed by the maintenance task).",
            registry=r,
            multiprocess_mode="livemax",
        )
        # -- consumers: processing after the ack (downlink.pipeline.consumers) ----------
        self.consumer_lag_records = Gauge(
            "downlink_consumer_lag_records",
            "Committed rows a consumer has not handled yet, by consumer.",
            ["consumer"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.consumer_lag_seconds = Gauge(
            "downlink_consumer_lag_seconds",
            "Age of the oldest row a consumer has not handled yet (0 when caught up).",
            ["consumer"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.consumer_handled = Counter(
            "downlink_consumer_handled_records",
            "Rows handled by a consumer, by consumer.",
            ["consumer"],
            registry=r,
        )
        self.consumer_failures = Counter(
            "downlink_consumer_failures",
            "Consumer batches that failed (rolled back, retried later), by consumer.",
            ["consumer"],
            registry=r,
        )
        self.archive_open_rows = Gauge(
            "downlink_archive_open_rows",
            "Archived rows still in open segments, not yet in a closed day file, by archive.",
            ["archive"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.archive_open_days_oldest_seconds = Gauge(
            "downlink_archive_unclosed_seconds",
            "Seconds since the end of the oldest day the archive has not closed (0: none).",
            ["archive"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.archive_close_failures = Counter(
            "downlink_archive_close_failures",
            "Archive days whose closing failed (retried later), by archive.",
            ["archive"],
            registry=r,
        )
        self.task_failures = Counter(
            "downlink_task_failures",
            "Runs of a source's periodic background task that failed (retried later), "
            "by task.",
            ["task"],
            registry=r,
        )
        for source in sources or ():
            if source.metrics is not None:
                self.by_source[source.name] = source.metrics(r)
