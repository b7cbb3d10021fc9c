"""The dashboard's reports, over the promoted rows (never the JSON documents).

Every report takes a :class:`Filter`: not-filtered installations only, optionally of
one Fuel release, optionally last reporting (created or modified) within a date range;
action-log reports take logs received within the range from those installations.
Operable environments are those in status ``operational`` or ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, case, false, func, or_, select

from downlink.sources.fuelstats.tables import action_logs, clusters, installations, nodes

OPERABLE = ("operational", "error")
SIZE_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, None))
HEALTH_CHECKS = ("verify_networks", "check_networks", "check_before_deployment",
                 "check_dhcp", "multicast_verification")
TOP = 15

i, c, n, a = installations.c, clusters.c, nodes.c, action_logs.c


@dataclass(frozen=True)
class Filter:
    """Which installations a report covers."""

    release: str | None = None
    since: float | None = None
    until: float | None = None

    def installations(self) -> Any:
        """The condition on ``fuel_installation_structures``."""
        cond = [i.is_filtered == false()]
        if self.release is not None:
            cond.append(i.release == self.release)
        last = func.coalesce(i.modification_date, i.creation_date)
        if self.since is not None:
            cond.append(last >= self.since)
        if self.until is not None:
            cond.append(last < self.until)
        return and_(*cond)

    def logs(self) -> Any:
        """The condition on ``fuel_action_logs`` (joined to installations)."""
        cond = [i.is_filtered == false()]
        if self.release is not None:
            cond.append(i.release == self.release)
        if self.since is not None:
            cond.append(a.ts_reception >= self.since)
        if self.until is not None:
            cond.append(a.ts_reception < self.until)
        return and_(*cond)


def _pairs(conn: Connection, query: Select[Any]) -> list[tuple[Any, int]]:
    return [(k, int(v)) for k, v in conn.execute(query)]


def _on_clusters(f: Filter, *columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(clusters)
        .join(installations, installations.c.id == c.installation_id)
        .where(f.installations())
    )


def _on_nodes(f: Filter, *columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(nodes)
        .join(installations, installations.c.id == n.installation_id)
        .where(f.installations())
    )


def _bucket(value: int) -> str:
    for low, high in SIZE_BUCKETS:
        if high is None or value <= high:
            return f"{low}+" if high is None else f"{low}-{high}"
    return "?"


def _bucketed(pairs: Sequence[tuple[Any, int]]) -> list[tuple[str, int]]:
    counts = {(f"{lo}+" if hi is None else f"{lo}-{hi}"): 0 for lo, hi in SIZE_BUCKETS}
    for value, count in pairs:
        if isinstance(value, int) and value >= 1:
            counts[_bucket(value)] += count
    return list(counts.items())


def _top(pairs: list[tuple[Any, int]], limit: int = TOP) -> list[tuple[Any, int]]:
    return sorted(pairs, key=lambda p: (-p[1], str(p[0])))[:limit]


def summary(conn: Connection, f: Filter) -> dict[str, int]:
    """Installations, environments, operable environments, nodes."""
    count = func.count()
    return {
        "installations": int(conn.execute(
            select(count).select_from(installations).where(f.installations())).scalar_one()),
        "environments": int(conn.execute(_on_clusters(f, count)).scalar_one()),
        "operable_environments": int(conn.execute(
            _on_clusters(f, count).where(c.status.in_(OPERABLE))).scalar_one()),
        "nodes": int(conn.execute(_on_nodes(f, count)).scalar_one()),
    }


def fuel_releases(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Installations per Fuel release."""
    return _top(_pairs(conn, select(i.release, func.count()).where(f.installations())
                       .group_by(i.release)), 50)


def statuses(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Environments per status."""
    return _top(_pairs(conn, _on_clusters(f, c.status, func.count()).group_by(c.status)), 50)


def environments_per_installation(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Installations per number of environments."""
    return sorted(_pairs(conn, select(i.clusters_num, func.count()).where(f.installations())
                         .group_by(i.clusters_num)), key=lambda p: p[0])


def environment_sizes(conn: Connection, f: Filter) -> list[tuple[str, int]]:
    """Operable environments per node-count bucket."""
    return _bucketed(_pairs(conn, _on_clusters(f, c.nodes_num, func.count())
                            .where(c.status.in_(OPERABLE)).group_by(c.nodes_num)))


def hypervisors(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Operable environments per hypervisor."""
    return _top(_pairs(conn, _on_clusters(f, c.hypervisor, func.count())
                       .where(c.status.in_(OPERABLE), c.hypervisor.is_not(None))
                       .group_by(c.hypervisor)))


def operating_systems(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Operable environments per operating system."""
    return _top(_pairs(conn, _on_clusters(f, c.os, func.count())
                       .where(c.status.in_(OPERABLE), c.os.is_not(None)).group_by(c.os)))


def openstack_releases(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Environments per OpenStack release deployed (the environment's release version)."""
    return _top(_pairs(conn, _on_clusters(f, c.release_version, func.count())
                       .where(c.release_version.is_not(None)).group_by(c.release_version)))


def nodes_per_installation(conn: Connection, f: Filter) -> list[tuple[str, int]]:
    """Installations per node-count bucket."""
    per = _on_nodes(f, func.count().label("k")).group_by(n.installation_id).subquery()
    return _bucketed(_pairs(conn, select(per.c.k, func.count()).group_by(per.c.k)))


def hardware(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """The most common server models (manufacturer and product)."""
    model = func.coalesce(n.manufacturer, "?") + " " + func.coalesce(n.platform, "?")
    rows = _pairs(conn, _on_nodes(f, model, func.count())
                  .where(or_none(n.manufacturer, n.platform)).group_by(model))
    return _top(rows)


def or_none(*columns: Any) -> Any:
    """At least one of ``columns`` is set."""
    return or_(*(col.is_not(None) for col in columns))


def role_combinations(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Nodes per combination of roles (``compute+cinder`` is one combination)."""
    return _top(_pairs(conn, _on_nodes(f, n.roles, func.count()).where(n.roles != "")
                       .group_by(n.roles)))


def _logs(f: Filter, *columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(action_logs)
        .join(installations, installations.c.master_node_uid == a.master_node_uid)
        .where(f.logs())
    )


def deployment_time(conn: Connection, f: Filter) -> dict[str, Any]:
    """Average and count of successful top-level deployment durations (s)."""
    avg, count = conn.execute(
        _logs(f, func.avg(a.duration_s), func.count(a.duration_s)).where(
            a.action_name == "deployment", a.action_type == "nailgun_task",
            a.ended_status == "ready", a.top_level)
    ).one()
    return {"average_s": None if avg is None else round(float(avg), 1), "deployments": int(count)}


def failures_before_success(conn: Connection, f: Filter) -> dict[str, Any]:
    """Average failed deployments of an environment before its first successful one."""
    deploy = and_(a.action_name == "deployment", a.action_type == "nailgun_task", a.top_level,
                  a.cluster_id.is_not(None))
    first_ok = (
        _logs(f, a.master_node_uid.label("uid"), a.cluster_id.label("cid"),
              func.min(a.external_id).label("ok_id"))
        .where(deploy, a.ended_status == "ready")
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


def health_checks(conn: Connection, f: Filter) -> list[dict[str, Any]]:
    """Runs and failures of each health check task."""
    failed = func.sum(case((a.ended_status == "error", 1), else_=0))
    rows = conn.execute(
        _logs(f, a.action_name, func.count(), failed)
        .where(a.action_name.in_(HEALTH_CHECKS), a.action_type == "nailgun_task", a.top_level,
               a.ended_status.is_not(None))
        .group_by(a.action_name)
        .order_by(a.action_name)
    )
    return [{"check": name, "runs": int(runs), "failed": int(bad or 0)}
            for name, runs, bad in rows]


def releases(conn: Connection) -> list[str]:
    """The Fuel releases of not-filtered installations (for the filter form)."""
    rows = conn.execute(select(i.release).where(i.is_filtered == false(), i.release.is_not(None))
                        .group_by(i.release).order_by(i.release))
    return [str(r) for (r,) in rows]


def everything(conn: Connection, f: Filter) -> dict[str, Any]:
    """Every report of the dashboard."""
    return {
        "summary": summary(conn, f),
        "fuel_releases": fuel_releases(conn, f),
        "statuses": statuses(conn, f),
        "environments_per_installation": environments_per_installation(conn, f),
        "environment_sizes": environment_sizes(conn, f),
        "hypervisors": hypervisors(conn, f),
        "operating_systems": operating_systems(conn, f),
        "openstack_releases": openstack_releases(conn, f),
        "nodes_per_installation": nodes_per_installation(conn, f),
        "hardware": hardware(conn, f),
        "role_combinations": role_combinations(conn, f),
        "deployment_time": deployment_time(conn, f),
        "failures_before_success": failures_before_success(conn, f),
        "health_checks": health_checks(conn, f),
        "releases": releases(conn),
    }
