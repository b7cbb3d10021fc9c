"""The background work of a process: consumers, jobs, the archive closer, sources' tasks.

``downlink serve`` runs it in every worker (``DOWNLINK_RUN_CONSUMERS=in-process``,
the default), or leaves it to ``downlink consume`` (``off``: :mod:`downlink.consume`)
and only watches the consumers' lag, read from their cursors, for its ``/metrics``
and the pages' freshness marks. Either way it is the same :class:`Background`, built
from the settings and started and stopped by the process's lifespan. The database
maintenance (size gauge, retention purge, partitions) and the spool's drainer stay
with ``serve``: the spool is local to the process that wrote it.
"""

from __future__ import annotations

from downlink.analytics.shipper import Shipping
from downlink.archive.closer import ArchiveCloser
from downlink.archive.consumer import SOURCE as ARCHIVE
from downlink.archive.consumer import archiving
from downlink.pipeline import reprocess
from downlink.pipeline.consumers import ConsumerRunner, bind
from downlink.pipeline.jobrunner import JobRunner
from downlink.pipeline.tasks import TaskRunner
from downlink.settings import Settings
from downlink.store.database import Store


class Background:
    """The consumer runner, the job runner, the archive closer and the sources' tasks
    (``Source.tasks``, :class:`~downlink.pipeline.tasks.TaskRunner`) of one process.

    ``run=False`` builds only a watching consumer runner (``handle=False``: lag
    gauges and freshness, no batches) and no job runner, closer or task runner.
    """

    def __init__(
        self, settings: Settings, store: Store, analytics: Shipping | None, *, run: bool
    ) -> None:
        sources = settings.registry
        # The optional ClickHouse analytics store: its shippers are consumers like any other.
        shippers = [] if analytics is None else [("analytics", c) for c in analytics.consumers()]
        # The raw archive (DOWNLINK_ARCHIVE): a consumer per archived table, and a closer.
        archive = archiving(settings)
        archivers = [] if archive is None else [(ARCHIVE, c) for c in archive.consumers()]
        bound = bind(sources, [*shippers, *archivers])
        self.run = run
        self.consumer_runner = ConsumerRunner(
            store,
            bound,
            poll_s=settings.consumer_poll_s,
            retry_max_s=settings.consumer_retry_max_s,
            handle=run,
        )
        self.job_runner: JobRunner | None = None
        self.closer: ArchiveCloser | None = None
        self.task_runner: TaskRunner | None = None
        if not run:
            return
        kinds = [*reprocess.job_kinds(bound), *(k for s in sources for k in s.job_kinds)]
        self.job_runner = JobRunner(
            store,
            poll_s=settings.job_poll_s,
            kinds=kinds,
            drivers=list(sources.job_drivers.values()),
        )
        if archive is not None:
            self.closer = ArchiveCloser(store, archive, retry_max_s=settings.consumer_retry_max_s)
        # The sources' periodic tasks (OONI's hourly archive), each under a lease.
        self.task_runner = TaskRunner(
            store, settings, list(sources.tasks), retry_max_s=settings.consumer_retry_max_s
        )
        # Records committed by this process's writer: look for consumer work at once.
        # (Another process's commits are found by polling, every DOWNLINK_CONSUMER_POLL_S.)
        store.writer.on_commit = self.consumer_runner.wake

    def start(self) -> None:
        """Start the loops on the running event loop."""
        if self.job_runner is not None:
            self.job_runner.start()
        self.consumer_runner.start()
        if self.closer is not None:
            self.closer.start()
        if self.task_runner is not None:
            self.task_runner.start()

    async def stop(self) -> None:
        """Stop them after the work in flight (each commits or rolls back on its own)."""
        if self.task_runner is not None:
            await self.task_runner.stop()
        if self.closer is not None:
            await self.closer.stop()
        await self.consumer_runner.stop()
        if self.job_runner is not None:
            await self.job_runner.stop()

    def running(self) -> bool:
        """Whether every loop that should run is running (``downlink consume``'s health)."""
        loops = [self.consumer_runner, self.job_runner, self.task_runner]
        return all(loop is None or not loop.enabled() or loop.alive() for loop in loops)
