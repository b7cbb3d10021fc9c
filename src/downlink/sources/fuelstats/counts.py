"""The dashboard's counts, kept at ingest instead of aggregated at read time.

``fuel_counts`` holds, per report, UTC day, Fuel release and key (the JSON of the
grouped value), a count ``n`` and a sum ``total``. Every report of the dashboard
(``reports.py``) and the installations report (``queries.installations_report``) is a
``GROUP BY key`` over the rows of one report and the filter's days: a few thousand
rows, not every environment, node and action log.

What an installation contributes (:func:`contributions`) depends only on its own row,
its environment and node rows and its action logs, and only while it is not filtered:

* its own counts fall on the day of its last report (modification, else creation);
* its action logs' counts fall on each log's reception day;
* each of its environments with a successful deployment (a ``fuel_deployments`` row,
  kept by the ``fuelstats_deployments`` consumer, ``deployments.py``) counts once in
  ``failures_before_success``, with its failures before that deployment as ``total``,
  on the day the first successful deployment was received.

So each write keeps the counts exact in its own transaction, the write sinks', the
deployments consumer's and the refilter job's: a structure upsert takes back the
installation's old contributions and adds the new ones (its logs' and environments'
too when its release or filter status changed, or when it is new: logs may come before
their installation); new action logs add theirs when their installation is known and
not filtered; the deployments consumer swaps an environment's old share for its new
one; the refilter job moves an installation's whole contribution in or out.
:func:`rebuild` recomputes everything from the rows (after a bulk load or from
``downlink`` jobs), in chunks of installations; the ``fuel_deployments`` rows
themselves are the consumer's, rebuilt by ``downlink reprocess``.

On PostgreSQL, every transaction that changes counts first takes one transaction-level
advisory lock (:func:`lock`), before any other fuel-stats row: several server
processes then change installations and counts one transaction at a time instead of
deadlocking on rows taken in different orders (SQLite has one writer anyway).

While a recount runs
--------------------
The ``fuel_recount`` job (``refilter.recount_step``) clears the counts at its cursor 0,
then adds the installations from their rows, chunk by chunk in id order, its cursor
(the last id added) committed in the step's own transaction. Meanwhile the other
writers go on: a delta for an installation the recount has not reached yet would be
counted twice (the delta now, the installation's whole contribution from its rows
later) or take back what was never added. So the rule for every writer of counts:
:func:`lock` returns the transaction's :class:`Scope`, read after the lock (the
recount's step holds the same lock until its commit, so the cursor read is its latest
committed one, and cannot move before this transaction ends); a writer adds or takes
back only the contributions of installations with ``id <= cursor`` of the active
(pending or running) recount, and of every installation when none is active. The
others are left to the recount, which counts them as their rows are when it reaches
them. Each case:

* a recount queued but not started (cursor 0) leaves out every delta: its first step
  clears the counts anyway; a restart asked of a running recount (its ``restart``
  flag) takes effect at its next step, which sets its cursor back to 0 and clears:
  until then writers keep the old cursor, harmlessly;
* an installation created during the recount gets an id above the cursor (SQLite: the
  largest id plus one; PostgreSQL: the sequence, drawn under the lock, after every id
  the recount has read): left out, and its action logs and environments with it (were
  its id at or below the cursor, this transaction would count it, as the recount has
  passed it: the rule does not depend on how ids are drawn); logs and environments of
  an installation not stored yet count nothing, as always (its creation adds them);
* the refilter job still sets the flag of an installation beyond the cursor, but
  moves no count: the recount reads the new flag;
* the deployments consumer still replaces the ``fuel_deployments`` rows of such an
  installation, which the recount reads;
* a recount taken over by another process, or put back to pending, resumes from its
  committed cursor, which is the one writers read;
* several active recounts (two servers queueing one at the same start) run one after
  the other, oldest first (one lane); writers take the lowest cursor, so they leave out
  everything while one of them has yet to clear.

:func:`lock` reads that cursor once per transaction (one query on the ``jobs`` index
of kind and state), kept for the transaction, or the savepoint, that read it: a
savepoint rolled back releases a lock taken inside it on PostgreSQL, so another
savepoint takes the lock and reads again.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, false, func, select, true
from sqlalchemy.dialects import postgresql, sqlite

from downlink.sources.fuelstats.tables import (
    action_logs,
    clusters,
    counts,
    deployments,
    installations,
    nodes,
)
from downlink.store.jobs import ACTIVE
from downlink.store.tables import jobs

OPERABLE = ("operational", "error")
HEALTH_CHECKS = ("verify_networks", "check_networks", "check_before_deployment",
                 "check_dhcp", "multicast_verification")
DAY = 86400.0
FAILURES = "failures_before_success"
RECOUNT = "fuel_recount"  # the job kind of the recount (``refilter.recount_step``)

RowLike = Mapping[Any, Any]  # a row as a mapping (SQLAlchemy's RowMapping or a dict)
# (report, day, release, key) -> [n, total]
Cell = tuple[str, int, str, str]
Delta = dict[Cell, list[float]]


@dataclass(frozen=True)
class Scope:
    """The installations whose contributions a transaction's deltas may change.

    ``upto`` None: every installation (no recount active); else those with an id up to
    ``upto``, the active recount's cursor: it counts the others from their rows when
    it reaches them (see the module docstring).
    """

    upto: int | None = None

    def includes(self, installation_id: int) -> bool:
        """Whether this transaction counts the installation's deltas itself."""
        return self.upto is None or installation_id <= self.upto


EVERY = Scope()


def key_of(value: Any) -> str:
    """The stored key of a grouped value (JSON, so ints stay ints and None is null)."""
    return orjson.dumps(value).decode()


def day_of(ts: float) -> int:
    """The UTC day number of an epoch time."""
    return int(ts // DAY)


def _add(delta: Delta, cell: Cell, n: float, total: float = 0.0, sign: int = 1) -> None:
    entry = delta.setdefault(cell, [0.0, 0.0])
    entry[0] += sign * n
    entry[1] += sign * total


def structure_delta(
    delta: Delta, inst: RowLike, cluster_rows: Sequence[RowLike],
    node_rows: Sequence[RowLike], sign: int = 1,
) -> None:
    """Add (``sign`` 1) or take back (-1) what an installation's own rows count."""
    if inst["is_filtered"]:
        return
    day = day_of(inst["modification_date"] or inst["creation_date"])
    release = inst["release"] or ""

    def add(report: str, value: Any, n: float = 1) -> None:
        _add(delta, (report, day, release, key_of(value)), n, 0.0, sign)

    add("installations", None)
    add("fuel_releases", inst["release"])
    add("clusters_num", inst["clusters_num"])
    add("environments", None, len(cluster_rows))
    add("nodes", None, len(node_rows))
    for c in cluster_rows:
        status = c["status"]
        add("statuses", status)
        if c["release_version"] is not None:
            add("openstack_releases", c["release_version"])
        if status in OPERABLE:
            add("operable_environments", None)
            add("environment_sizes", c["nodes_num"])
            if c["hypervisor"] is not None:
                add("hypervisors", c["hypervisor"])
            if c["os"] is not None:
                add("operating_systems", c["os"])
    if node_rows:
        add("nodes_per_installation", len(node_rows))
    for n in node_rows:
        if n["manufacturer"] is not None or n["platform"] is not None:
            add("hardware", f"{n['manufacturer'] or '?'} {n['platform'] or '?'}")
        if n["roles"]:
            add("role_combinations", n["roles"])


def log_cells(row: RowLike) -> list[tuple[str, Any, float]]:
    """What one action log counts: (report, key, total) for a count of one."""
    if row.get("action_type") != "nailgun_task" or not row.get("top_level"):
        return []
    name, status = row.get("action_name"), row.get("ended_status")
    if name == "deployment" and status == "ready" and row.get("duration_s") is not None:
        return [("deployment_time", None, float(row["duration_s"]))]
    if name in HEALTH_CHECKS and status is not None:
        return [("health_checks", name, 1.0 if status == "error" else 0.0)]
    return []


def logs_delta(
    delta: Delta, release: str | None, rows: Iterable[RowLike], sign: int = 1
) -> None:
    """Add (or take back) what action logs of one not-filtered installation count."""
    for row in rows:
        for report, value, total in log_cells(row):
            _add(delta, (report, day_of(row["ts_reception"]), release or "", key_of(value)),
                 1, total, sign)


def deployments_delta(
    delta: Delta, release: str | None, rows: Iterable[RowLike], sign: int = 1
) -> None:
    """Add (or take back) what environments of one not-filtered installation count in
    ``failures_before_success`` (their ``fuel_deployments`` rows)."""
    for row in rows:
        _add(delta, (FAILURES, int(row["day"]), release or "", key_of(None)),
             1, float(row["fails"]), sign)


def deployments_of(conn: Connection, uids: Sequence[str]) -> dict[str, list[RowLike]]:
    """The ``fuel_deployments`` rows of some master nodes, by node."""
    found: dict[str, list[RowLike]] = {}
    if not uids:
        return found
    for row in conn.execute(
        select(deployments).where(deployments.c.master_node_uid.in_(list(uids)))
    ).mappings():
        found.setdefault(row["master_node_uid"], []).append(row)
    return found


_LOG_COLUMNS = (action_logs.c.action_type, action_logs.c.action_name,
                action_logs.c.ended_status, action_logs.c.duration_s,
                action_logs.c.top_level, action_logs.c.ts_reception)
_COUNTED = and_(action_logs.c.action_type == "nailgun_task", action_logs.c.top_level == true())


def _logs_of(conn: Connection, uids: Sequence[str]) -> dict[str, list[RowLike]]:
    """The counted action logs of some master nodes, by node (one indexed query)."""
    found: dict[str, list[RowLike]] = {}
    if not uids:
        return found
    rows = conn.execute(
        select(action_logs.c.master_node_uid, *_LOG_COLUMNS)
        .where(action_logs.c.master_node_uid.in_(list(uids)), _COUNTED)
    ).mappings()
    for row in rows:
        found.setdefault(row["master_node_uid"], []).append(row)
    return found


def installation_delta(
    conn: Connection, delta: Delta, inst: RowLike, *, sign: int, with_logs: bool,
    scope: Scope,
    cluster_rows: Sequence[RowLike] | None = None,
    node_rows: Sequence[RowLike] | None = None,
) -> None:
    """An installation's contribution as stored (its rows read unless given); nothing
    for an installation outside ``scope`` (a recount will count it)."""
    if inst["is_filtered"] or not scope.includes(int(inst["id"])):
        return
    if cluster_rows is None:
        cluster_rows = conn.execute(
            select(clusters).where(clusters.c.installation_id == inst["id"])).mappings().all()
    if node_rows is None:
        node_rows = conn.execute(
            select(nodes).where(nodes.c.installation_id == inst["id"])).mappings().all()
    structure_delta(delta, inst, cluster_rows, node_rows or (), sign)
    if with_logs:
        uid = inst["master_node_uid"]
        logs_delta(delta, inst["release"], _logs_of(conn, [uid]).get(uid, []), sign)
        deployments_delta(delta, inst["release"], deployments_of(conn, [uid]).get(uid, []),
                          sign)


def new_logs_delta(conn: Connection, rows: Sequence[RowLike], scope: Scope) -> Delta:
    """What newly inserted action logs count (those of known, not-filtered nodes in
    ``scope``)."""
    delta: Delta = {}
    counted = [row for row in rows if log_cells(row)]
    if not counted:
        return delta
    uids = sorted({row["master_node_uid"] for row in counted})
    shown = {
        uid: release
        for uid, release, installation_id in conn.execute(
            select(installations.c.master_node_uid, installations.c.release,
                   installations.c.id)
            .where(installations.c.master_node_uid.in_(uids),
                   installations.c.is_filtered == false()))
        if scope.includes(int(installation_id))
    }
    for row in counted:
        uid = row["master_node_uid"]
        if uid in shown:
            logs_delta(delta, shown[uid], [row])
    return delta


# pg_advisory_xact_lock's key for "fuel-stats counts" (any constant unique to them).
_LOCK_KEY = 0x6675656C636E74


# conn.info's key of the scope read in the current transaction or savepoint.
_SCOPE_KEY = "downlink.fuelstats.counts.scope"


class _ScopeRead:
    """A scope and the transaction (and savepoint) it was read in, weakly referenced:
    a new transaction is a new object, so a stale read never matches."""

    __slots__ = ("nested", "root", "scope")

    def __init__(self, root: Any, nested: Any, scope: Scope) -> None:
        self.root = weakref.ref(root)
        self.nested = None if nested is None else weakref.ref(nested)
        self.scope = scope

    def of(self, root: Any, nested: Any) -> bool:
        """Whether it was read in this transaction and savepoint."""
        here = None if self.nested is None else self.nested()
        return root is not None and self.root() is root and here is nested


def lock(conn: Connection) -> Scope:
    """Take the counts' lock until the end of the transaction (PostgreSQL only), and
    return the transaction's :class:`Scope`.

    The first call in a transaction (or savepoint) takes the lock and reads the active
    recount's cursor; later calls in it return the same scope without a statement.
    """
    read = conn.info.get(_SCOPE_KEY)
    if isinstance(read, _ScopeRead) and read.of(conn.get_transaction(),
                                                 conn.get_nested_transaction()):
        return read.scope
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    scope = recount_scope(conn)
    root = conn.get_transaction()  # begun by the statements above if it was not
    if root is not None:
        conn.info[_SCOPE_KEY] = _ScopeRead(root, conn.get_nested_transaction(), scope)
    return scope


# Built once: building the statement on every call cost 4 times its execution on
# SQLite (about 460 against 100 to 130 us of CPU, measured in process, loaded machine).
_ACTIVE_RECOUNT_CURSOR = select(func.min(jobs.c.cursor)).where(
    jobs.c.kind == RECOUNT, jobs.c.state.in_(ACTIVE))


def recount_scope(conn: Connection) -> Scope:
    """The scope the active recounts leave to writers (read after :func:`lock`)."""
    cursor = conn.execute(_ACTIVE_RECOUNT_CURSOR).scalar()
    return EVERY if cursor is None else Scope(int(cursor))


def apply(conn: Connection, delta: Delta) -> None:
    """Add ``delta`` to ``fuel_counts`` (in sorted order: no deadlocks between writers)."""
    rows = [
        {"report": cell[0], "day": cell[1], "release": cell[2], "key": cell[3],
         "n": int(v[0]), "total": v[1]}
        for cell, v in sorted(delta.items())
        if v[0] or v[1]
    ]
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(counts)
    # One statement with many parameter sets (compiled once, cached): a .values(rows)
    # statement was compiled anew for every call, most of a rebuild's time.
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["report", "release", "day", "key"],
        set_={"n": counts.c.n + stmt.excluded.n,
              "total": counts.c.total + stmt.excluded.total},
    ), rows)


def rebuild_chunk(conn: Connection, after: int, limit: int = 500) -> int | None:
    """Add the contributions of the installations after id ``after``; the last id done,
    or None when there are no more. (:func:`clear` first, then chunk after chunk.)"""
    insts = conn.execute(
        select(installations).where(installations.c.id > after)
        .order_by(installations.c.id).limit(limit)
    ).mappings().all()
    if not insts:
        return None
    shown = [inst for inst in insts if not inst["is_filtered"]]
    ids = [inst["id"] for inst in shown]
    by_cluster: dict[int, list[RowLike]] = {}
    by_node: dict[int, list[RowLike]] = {}
    if ids:
        for row in conn.execute(select(clusters).where(clusters.c.installation_id.in_(ids)))\
                .mappings():
            by_cluster.setdefault(row["installation_id"], []).append(row)
        for row in conn.execute(select(nodes).where(nodes.c.installation_id.in_(ids)))\
                .mappings():
            by_node.setdefault(row["installation_id"], []).append(row)
    uids = [inst["master_node_uid"] for inst in shown]
    logs = _logs_of(conn, uids)
    envs = deployments_of(conn, uids)
    delta: Delta = {}
    for inst in shown:
        structure_delta(delta, inst, by_cluster.get(inst["id"], []),
                        by_node.get(inst["id"], []))
        logs_delta(delta, inst["release"], logs.get(inst["master_node_uid"], []))
        deployments_delta(delta, inst["release"], envs.get(inst["master_node_uid"], []))
    apply(conn, delta)
    return int(insts[-1]["id"])


def clear(conn: Connection) -> None:
    """Delete every count (before a rebuild)."""
    conn.execute(delete(counts))


def rebuild(conn: Connection) -> None:
    """Recompute every count in this transaction (tests, benchmarks, small databases)."""
    clear(conn)
    after: int | None = 0
    while after is not None:
        after = rebuild_chunk(conn, after)


# -- reading ---------------------------------------------------------------------------


def grouped(
    conn: Connection, report: str, release: str | None = None,
    since: float | None = None, until: float | None = None,
) -> list[tuple[Any, int, float]]:
    """``(value, count, total)`` of one report over the filter's days, by key."""
    cond = [counts.c.report == report]
    if release is not None:
        cond.append(counts.c.release == release)
    if since is not None:
        cond.append(counts.c.day >= day_of(since))
    if until is not None:
        # ``until`` is a midnight (the day after the range): days strictly before it.
        cond.append(counts.c.day < day_of(until) + (0 if until % DAY == 0 else 1))
    n = func.sum(counts.c.n)
    rows = conn.execute(
        select(counts.c.key, n, func.sum(counts.c.total))
        .where(*cond).group_by(counts.c.key).having(n != 0)
    )
    return [(orjson.loads(key), int(count), float(total or 0)) for key, count, total in rows]


def total_of(conn: Connection, report: str, **where: Any) -> int:
    """The count of a report without a key (``installations``, ``nodes``, …)."""
    return sum(count for _, count, _ in grouped(conn, report, **where))


def by_release(conn: Connection, report: str) -> list[tuple[str, Any, int]]:
    """``(release, value, count)`` of one report over every day (for the report API)."""
    n = func.sum(counts.c.n)
    rows = conn.execute(
        select(counts.c.release, counts.c.key, n)
        .where(counts.c.report == report)
        .group_by(counts.c.release, counts.c.key).having(n != 0)
    )
    return [(str(release), orjson.loads(key), int(count)) for release, key, count in rows]

