"""The server keeps OONI's hourly raw archive itself: the task ``ooni_archive``.

Declared in ``Source.tasks``: every process that runs the consumers (each ``downlink
serve`` worker, or ``downlink consume`` with ``DOWNLINK_RUN_CONSUMERS=off``) looks every
``DOWNLINK_OONI_ARCHIVE_EVERY_S`` for hours that are over (plus
``DOWNLINK_OONI_ARCHIVE_GRACE_S``) and archives them, one process at a time under the
task's lease (:mod:`downlink.pipeline.tasks`). Off when ``DOWNLINK_OONI_ARCHIVE`` is
empty or the period is 0 (then ``downlink ooni archive`` does it by hand: the same
:func:`~downlink.sources.ooni.archive.archive_due`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Connection

from downlink.archive.storage import Storage, open_storage
from downlink.settings import Settings
from downlink.sources.base import Task, TaskContext
from downlink.sources.ooni.archive import archive_due, archived_until, next_due
from downlink.sources.ooni.config import config_from

NAME = "ooni_archive"


@lru_cache(maxsize=4)
def storage_at(url: str, endpoint: str) -> Storage:
    """The archive's storage (one S3 client per process and URL)."""
    return open_storage(url, endpoint or None)


def every(settings: Settings) -> float:
    """Seconds between runs (0: the server does not archive)."""
    cfg = config_from(settings)
    return cfg.archive_every_s if cfg.archive else 0.0


def run(ctx: TaskContext) -> int:
    """Archive every hour that is due; how many measurements."""
    cfg = config_from(ctx.settings)
    storage = storage_at(cfg.archive, cfg.s3_endpoint)
    return archive_due(ctx, storage, cfg.collector_id, cfg.archive_grace_s).measurements


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:00 UTC")


def describe(conn: Connection, settings: Settings, now: float) -> str:
    """Where the archive stands: archived until when, and the hour due if any."""
    done = archived_until(conn)
    text = f"archived until {_at(done)}" if done else "no hour archived yet"
    due = next_due(conn, now, config_from(settings).archive_grace_s)
    if due is not None:
        text += f"; due: the hour from {_at(due)}"
    return text


TASK = Task(NAME, every, run, describe)
