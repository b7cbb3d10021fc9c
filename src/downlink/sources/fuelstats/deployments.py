"""Failures before an environment's first successful deployment, kept after the ack.

The ``fuelstats_deployments`` consumer follows ``fuel_action_logs``. A deployment log
is a top-level ``nailgun_task`` named ``deployment`` of an environment (``cluster_id``)
that ended ``ready`` (a success) or ``error`` (a failure). For every environment (master
node, cluster id) with a success, ``fuel_deployments`` holds the first success (lowest
external id, nailgun's order), the UTC day it was received and the failures with a
lower external id; its share of ``fuel_counts`` (report ``failures_before_success``:
one environment, its failures as ``total``, on that day, under its installation's
release while the installation is known and not filtered) is kept with it.

Logs come in any order (a sender's chunks, retransmissions), so the consumer does not
add a log to a running state: for each environment a batch touches it recomputes the
row from every stored deployment log of its master node (one indexed query per batch)
and swaps the old row and its share of the counts for the new ones. Only a log with a
lower id than the environment's stored first success can change its row, so the others
(most logs, which arrive in nailgun's order) cost one read of the stored rows. Handling a log
again, or handling it after later logs, gives the same row: replays are idempotent,
and ``reset`` (``downlink reprocess``) forgets the environments with a deployment log in
the range, which the replay then recomputes whole. Structure upserts and the refilter
job move an installation's environments in or out of the counts with its other counts
(``counts.installation_delta``). While a recount has yet to reach an installation, the
consumer still replaces its rows but moves none of its counts: the recount reads the
rows (``counts.lock``'s scope).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, false, select, true, tuple_

from downlink.sources.base import Consumer, LogRecord
from downlink.sources.fuelstats import counts
from downlink.sources.fuelstats.tables import action_logs, deployments, installations

NAME = "fuelstats_deployments"
ENDED = ("ready", "error")
CHUNK = 500  # master nodes per query

Env = tuple[str, int]
State = tuple[int, int, int]  # (ok_id, day, fails)

a = action_logs.c
_DEPLOYMENT = and_(a.action_type == "nailgun_task", a.action_name == "deployment",
                   a.top_level == true(), a.cluster_id.is_not(None), a.ended_status.in_(ENDED))


def is_deployment(row: Mapping[str, Any]) -> bool:
    """Whether an action log row is a finished top-level deployment of an environment."""
    return (row.get("action_type") == "nailgun_task" and row.get("action_name") == "deployment"
            and bool(row.get("top_level")) and row.get("cluster_id") is not None
            and row.get("ended_status") in ENDED)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def states(conn: Connection, uids: Sequence[str]) -> dict[Env, State]:
    """Each environment's state, from every stored deployment log of ``uids``."""
    logs: dict[Env, list[tuple[int, str, float]]] = {}
    for part in _chunks(uids):
        for uid, cid, ext, status, ts in conn.execute(
            select(a.master_node_uid, a.cluster_id, a.external_id, a.ended_status,
                   a.ts_reception)
            .where(a.master_node_uid.in_(list(part)), _DEPLOYMENT)
        ):
            logs.setdefault((str(uid), int(cid)), []).append((int(ext), str(status), float(ts)))
    found: dict[Env, State] = {}
    for env, rows in logs.items():
        oks = [(ext, ts) for ext, status, ts in rows if status == "ready"]
        if not oks:
            continue
        ok_id, ok_ts = min(oks)
        fails = sum(1 for ext, status, _ in rows if status == "error" and ext < ok_id)
        found[env] = (ok_id, counts.day_of(ok_ts), fails)
    return found


def _stored(conn: Connection, uids: Sequence[str]) -> dict[Env, State]:
    found: dict[Env, State] = {}
    for part in _chunks(uids):
        for row in conn.execute(
            select(deployments).where(deployments.c.master_node_uid.in_(list(part)))
        ).mappings():
            found[(row["master_node_uid"], int(row["cluster_id"]))] = (
                int(row["ok_id"]), int(row["day"]), int(row["fails"]))
    return found


def _shown(conn: Connection, uids: Sequence[str], scope: counts.Scope) -> dict[str, str | None]:
    """The release of each known, not-filtered installation among ``uids`` whose counts
    this transaction keeps (``scope``: not one a recount has yet to reach)."""
    found: dict[str, str | None] = {}
    for part in _chunks(uids):
        for uid, release, installation_id in conn.execute(
            select(installations.c.master_node_uid, installations.c.release,
                   installations.c.id)
            .where(installations.c.master_node_uid.in_(list(part)),
                   installations.c.is_filtered == false())):
            if scope.includes(int(installation_id)):
                found[str(uid)] = None if release is None else str(release)
    return found


def _row(env: Env, state: State) -> dict[str, Any]:
    return {"master_node_uid": env[0], "cluster_id": env[1], "ok_id": state[0],
            "day": state[1], "fails": state[2]}


def replace(
    conn: Connection, envs: Iterable[Env], new: Mapping[Env, State],
    old: Mapping[Env, State] | None = None,
) -> None:
    """Make ``envs``' rows those of ``new`` (absent: none), their counts with them
    (``old``: their stored rows, when just read)."""
    wanted = set(envs)
    if not wanted:
        return
    scope = counts.lock(conn)  # first (again: the same transaction's scope, no statement)
    uids = sorted({uid for uid, _ in wanted})
    if old is None:
        old = _stored(conn, uids)
    shown = _shown(conn, uids, scope)
    changed = sorted(env for env in wanted if old.get(env) != new.get(env))
    if not changed:
        return
    delta: counts.Delta = {}
    for env in changed:
        if env[0] not in shown:
            continue
        release = shown[env[0]]
        if (before := old.get(env)) is not None:
            counts.deployments_delta(delta, release, [_row(env, before)], -1)
        if (after := new.get(env)) is not None:
            counts.deployments_delta(delta, release, [_row(env, after)], 1)
    key = tuple_(deployments.c.master_node_uid, deployments.c.cluster_id)
    for part in _chunks([env for env in changed if env in old]):
        conn.execute(delete(deployments).where(key.in_(list(part))))
    rows = [_row(env, new[env]) for env in changed if env in new]
    if rows:
        conn.execute(deployments.insert(), rows)
    counts.apply(conn, delta)


def refresh(conn: Connection, envs: Iterable[Env]) -> None:
    """Recompute ``envs`` from their stored deployment logs."""
    wanted = set(envs)
    if wanted:
        counts.lock(conn)  # first: see counts.py
        replace(conn, wanted, states(conn, sorted({uid for uid, _ in wanted})))


def handle(conn: Connection, batch: Sequence[LogRecord]) -> None:
    """Recompute the environments of the batch's deployment logs, but for those whose
    stored first success comes before every one of the batch's logs (a later success
    or failure changes nothing: the usual case, logs arriving in nailgun's order)."""
    lowest: dict[Env, int] = {}
    for record in batch:
        row = record.row
        if is_deployment(row):
            env = (str(row["master_node_uid"]), int(row["cluster_id"]))
            ext = int(row["external_id"])
            lowest[env] = min(ext, lowest.get(env, ext))
    if not lowest:
        return
    counts.lock(conn)  # first: see counts.py
    old = _stored(conn, sorted({uid for uid, _ in lowest}))
    stale = {env for env, ext in lowest.items() if env not in old or ext < old[env][0]}
    if stale:
        replace(conn, stale, states(conn, sorted({uid for uid, _ in stale})), old)


def reset(conn: Connection, since: float, until: float) -> None:
    """Forget the environments with a deployment log received in ``[since, until)``."""
    counts.lock(conn)  # first: see counts.py
    envs = {(str(uid), int(cid)) for uid, cid in conn.execute(
        select(a.master_node_uid, a.cluster_id).distinct()
        .where(_DEPLOYMENT, a.ts_reception >= since, a.ts_reception < until))}
    replace(conn, envs, {})


CONSUMER = Consumer(name=NAME, follows="fuel_action_logs", handle=handle, reset=reset)
