"""Reference answers of the fuel-stats tests: the reports as queries over the rows.

:func:`failures_before_success` is the read-time query the dashboard ran before
``fuel_deployments`` and its counts existed (kept here, verbatim but for the filter's
date condition, to check the counts against it); :func:`failures_in_range` is what the
report means with a date range, computed in Python from the rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, case, false, func, select

from downlink.sources.fuelstats.tables import action_logs, installations

a, i = action_logs.c, installations.c
DAY = 86400.0


def failures_before_success(conn: Connection, release: str | None) -> dict[str, Any]:
    """The old read-time query (no date range: it then agrees with the counts exactly)."""
    deploy = and_(a.action_name == "deployment", a.action_type == "nailgun_task", a.top_level,
                  a.cluster_id.is_not(None))
    cond = [i.is_filtered == false()]
    if release is not None:
        cond.append(i.release == release)
    first_ok = (
        select(a.master_node_uid.label("uid"), a.cluster_id.label("cid"),
               func.min(a.external_id).label("ok_id"))
        .select_from(action_logs)
        .join(installations, i.master_node_uid == a.master_node_uid)
        .where(and_(*cond), deploy, a.ended_status == "ready")
        .group_by(a.master_node_uid, a.cluster_id)
        .subquery()
    )
    failed = case((and_(a.ended_status == "error", a.external_id < first_ok.c.ok_id), 1), else_=0)
    per_env = (
        select(func.sum(failed).label("fails"))
        .select_from(action_logs.join(first_ok, and_(
            a.master_node_uid == first_ok.c.uid, a.cluster_id == first_ok.c.cid)))
        .where(deploy)
        .group_by(a.master_node_uid, a.cluster_id)
        .subquery()
    )
    avg, envs = conn.execute(select(func.avg(per_env.c.fails), func.count())).one()
    return {"average": None if avg is None else round(float(avg), 2), "environments": int(envs)}


def failures_in_range(
    conn: Connection, release: str | None, first_day: int, last_day: int
) -> dict[str, Any]:
    """Environments whose first successful deployment was received on ``first_day`` …
    ``last_day`` (UTC day numbers), from the rows."""
    shown = {uid: rel for uid, rel, flag in conn.execute(
        select(i.master_node_uid, i.release, i.is_filtered)) if not flag}
    logs: dict[tuple[str, int], list[tuple[int, str, float]]] = {}
    for uid, cid, ext, status, ts in conn.execute(
        select(a.master_node_uid, a.cluster_id, a.external_id, a.ended_status, a.ts_reception)
        .where(a.action_name == "deployment", a.action_type == "nailgun_task", a.top_level,
               a.cluster_id.is_not(None))
    ):
        logs.setdefault((uid, cid), []).append((ext, status, ts))
    fails: list[int] = []
    for (uid, _), rows in logs.items():
        if uid not in shown or (release is not None and shown[uid] != release):
            continue
        oks = sorted((ext, ts) for ext, status, ts in rows if status == "ready")
        if not oks or not first_day <= int(oks[0][1] // DAY) <= last_day:
            continue
        fails.append(sum(1 for ext, status, _ in rows if status == "error" and ext < oks[0][0]))
    if not fails:
        return {"average": None, "environments": 0}
    return {"average": round(sum(fails) / len(fails), 2), "environments": len(fails)}
