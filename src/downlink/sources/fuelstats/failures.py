"""Immediate failure reports: the consumer that turns failed tasks into notifications.

It follows ``fuel_action_logs`` after the ack. A top-level ``nailgun_task`` (no parent
task) that ended with status ``error`` is a failed deployment or operation; for each one
it adds one ``fuel_outbox`` row per configured channel, keyed by the failure
(``master_node_uid/external_id``) and the channel, in the same transaction as the
consumer's cursor. The unique key makes the notification exactly-once however often the
log is replayed; :mod:`downlink.sources.fuelstats.notify` delivers the rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from downlink.sources.base import Consumer, LogRecord
from downlink.sources.fuelstats.privacy import contact
from downlink.sources.fuelstats.sink import dialect_insert
from downlink.sources.fuelstats.tables import installations, outbox

NAME = "fuelstats_failures"
PENDING = "pending"
UNCONFIGURED = "unconfigured"


def failure_of(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The failure an action log reports, or None."""
    body = row.get("body")
    if not isinstance(body, Mapping) or body.get("action_type") != "nailgun_task":
        return None
    info = body.get("additional_info")
    if not isinstance(info, Mapping) or info.get("ended_with_status") != "error":
        return None
    if info.get("parent_task_id") is not None:
        return None  # a subtask: its parent task reports the failure
    return {
        "master_node_uid": row["master_node_uid"],
        "external_id": row["external_id"],
        "action_name": body.get("action_name"),
        "operation": info.get("operation"),
        "cluster_id": body.get("cluster_id"),
        "start_timestamp": body.get("start_timestamp"),
        "end_timestamp": body.get("end_timestamp"),
        "message": info.get("message"),
        "action_log": dict(body),
    }


def key_of(failure: Mapping[str, Any]) -> str:
    """The failure's identity: one notification per channel, ever."""
    return f"{failure['master_node_uid']}/{failure['external_id']}"


def make_handler(
    channels: Callable[[], Sequence[str]],
) -> Callable[[Connection, Sequence[LogRecord]], None]:
    """The consumer's ``handle``, delivering to the channels configured at the time.

    Set-based: one read of the failing nodes' structures (for their contacts) and one
    insert of the batch's outbox rows, whatever the number of failures in the batch.
    """

    def handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
        found = [(record, failure) for record in batch
                 if (failure := failure_of(record.row)) is not None]
        if not found:
            return
        uids = sorted({failure["master_node_uid"] for _, failure in found})
        structures = {uid: structure for uid, structure in conn.execute(
            select(installations.c.master_node_uid, installations.c.structure)
            .where(installations.c.master_node_uid.in_(uids)))}
        configured = list(channels()) or ["none"]
        now = time.time()
        rows: list[dict[str, Any]] = []
        for record, failure in found:
            structure = structures.get(failure["master_node_uid"])
            failure["contact"] = contact(structure) if isinstance(structure, dict) else None
            rows.extend(
                {
                    "failure_key": key_of(failure),
                    "channel": channel,
                    "action_log_id": record.seq,
                    "master_node_uid": failure["master_node_uid"],
                    "payload": failure,
                    "state": PENDING if channel != "none" else UNCONFIGURED,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for channel in configured
            )
        # One statement with many parameter sets (compiled once and cached; a
        # .values(rows) statement was compiled anew for every failure).
        conn.execute(
            dialect_insert(conn, outbox)
            .on_conflict_do_nothing(index_elements=["failure_key", "channel"]),
            rows,
        )

    return handle


def consumer(channels: Callable[[], Sequence[str]]) -> Consumer:
    """The failure-report consumer over ``fuel_action_logs``."""
    return Consumer(name=NAME, follows="fuel_action_logs", handle=make_handler(channels))
