"""The regroup after a "never guilty" edit: a revision of the crash consumer's records.

A "never guilty" edit only queues (or restarts) a ``regroup`` job
(:func:`request_regroup`, in the edit's transaction), so the POST answers at once.
The job is no driver of its own: it is the core's revision of a consumer in place
(``downlink.pipeline.reprocess.revise_step``, run by every server's job runner, or
by ``downlink reprocess --in-place``). Each step is one write transaction that holds
the crash consumer's cursor row, reads the next crash records the consumer has applied
(by id: at most :data:`~downlink.sources.base.Consumer.batch_max`, as many as about
200 ms of work allows on SQLite, 1 s on PostgreSQL: :mod:`downlink.pipeline.stepsize`),
regroups them with the list of the moment and moves the records whose group changed
from the old group's rollups to the new one's (``consumers._regroup``), saving the
job's cursor, counts and heartbeat with it. So:

* the crash dashboards show every record in exactly one group at every moment: never
  an emptied or half-rebuilt group, whatever the size of the database;
* SQLite's single writer, and with it ingestion, waits for one step at most (about
  200 ms, longer only when the machine is so loaded that even the smallest step, 100
  records, takes longer), and so does the live crash consumer (it groups new
  records with the list of its batch, read after it takes its cursor row, so after
  any edit whose restart the job saw);
* a job whose process dies resumes from its last committed batch once its heartbeat
  is stale (or at once after a clean shutdown); running it twice changes nothing
  the second time (the records are already in their groups);
* an edit while the job runs sets its ``restart`` flag: the next step starts over
  from the first record with the new list (``downlink.store.jobs`` explains why no
  edit is missed), and the job finishes only without a restart pending;
* it shares the crash consumer's lane with ``downlink reprocess`` jobs of that
  consumer, so a replay and a regroup never interleave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from downlink.pipeline.reprocess import request_revision
from downlink.sources.clearlinux.consumers import CRASHES, REGROUP_KIND
from downlink.sources.clearlinux.wire import SOURCE
from downlink.store import jobs

KIND = REGROUP_KIND
KINDS = (KIND,)


def request_regroup(conn: Connection, added: Sequence[tuple[str, str]] | None = None) -> int:
    """Restart the pending or running regroup job, or queue one; return its id.

    Call it in the transaction that edits the blacklist. ``added``: the edit only
    marked these frames never guilty, so only the crashes now in their groups can
    move (``consumers._in_groups_of``); otherwise every crash is regrouped.
    """
    narrow = None if added is None else [[f, m] for f, m in added]
    return request_revision(conn, SOURCE, CRASHES, narrow)


def regroup_status(conn: Connection) -> dict[str, Any] | None:
    """Return the status of the current (or last) regroup job, or None."""
    return jobs.status(conn, KIND)
