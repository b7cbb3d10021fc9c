"""The dashboard's reports, from the counts kept at ingest (``counts.py``).

All but one read ``fuel_counts`` (a few rows per day, release and key), never the
environment, node or action-log rows; the average failures before a successful
deployment still groups the deployment logs of the range.

Every report takes a :class:`Filter`: not-filtered installations only, optionally of
one Fuel release, optionally last reporting (created or modified) within a date range;
action-log reports take logs received within the range from those installations.
Operable environments are those in status ``operational`` or ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, case, false, func, select

from downlink.sources.fuelstats import counts
from downlink.sources.fuelstats.tables import action_logs, installations

OPERABLE = ("operational", "error")
SIZE_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, None))
HEALTH_CHECKS = ("verify_networks", "check_networks", "check_before_deployment",
                 "check_dhcp", "multicast_verification")
TOP = 15

i, a = installations.c, action_logs.c


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


def _counted(conn: Connection, f: Filter, report: str) -> list[tuple[Any, int]]:
    """``(value, count)`` of one kept report over the filter (``counts.py``)."""
    return [(value, n) for value, n, _ in
            counts.grouped(conn, report, f.release, f.since, f.until)]


def _count(conn: Connection, f: Filter, report: str) -> int:
    return counts.total_of(conn, report, release=f.release, since=f.since, until=f.until)


def summary(conn: Connection, f: Filter) -> dict[str, int]:
    """Installations, environments, operable environments, nodes."""
    return {
        "installations": _count(conn, f, "installations"),
        "environments": _count(conn, f, "environments"),
        "operable_environments": _count(conn, f, "operable_environments"),
        "nodes": _count(conn, f, "nodes"),
    }


def fuel_releases(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Installations per Fuel release."""
    return _top(_counted(conn, f, "fuel_releases"), 50)


def statuses(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Environments per status."""
    return _top(_counted(conn, f, "statuses"), 50)


def environments_per_installation(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Installations per number of environments."""
    return sorted(_counted(conn, f, "clusters_num"), key=lambda p: p[0])


def environment_sizes(conn: Connection, f: Filter) -> list[tuple[str, int]]:
    """Operable environments per node-count bucket."""
    return _bucketed(_counted(conn, f, "environment_sizes"))


def hypervisors(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Operable environments per hypervisor."""
    return _top(_counted(conn, f, "hypervisors"))


def operating_systems(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Operable environments per operating system."""
    return _top(_counted(conn, f, "operating_systems"))


def openstack_releases(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Environments per OpenStack release deployed (the environment's release version)."""
    return _top(_counted(conn, f, "openstack_releases"))


def nodes_per_installation(conn: Connection, f: Filter) -> list[tuple[str, int]]:
    """Installations per node-count bucket."""
    return _bucketed(_counted(conn, f, "nodes_per_installation"))


def hardware(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """The most common server models (manufacturer and product)."""
    return _top(_counted(conn, f, "hardware"))


def role_combinations(conn: Connection, f: Filter) -> list[tuple[Any, int]]:
    """Nodes per combination of roles (``compute+cinder`` is one combination)."""
    return _top(_counted(conn, f, "role_combinations"))


def _logs(f: Filter, *columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(action_logs)
        .join(installations, installations.c.master_node_uid == a.master_node_uid)
        .where(f.logs())
    )


def deployment_time(conn: Connection, f: Filter) -> dict[str, Any]:
    """Average and count of successful top-level deployment durations (s)."""
    found = counts.grouped(conn, "deployment_time", f.release, f.since, f.until)
    count = sum(n for _, n, _ in found)
    total = sum(t for _, _, t in found)
    return {"average_s": round(total / count, 1) if count else None, "deployments": count}


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
    found = counts.grouped(conn, "health_checks", f.release, f.since, f.until)
    return [{"check": name, "runs": runs, "failed": round(bad)}
            for name, runs, bad in sorted(found, key=lambda r: str(r[0]))]


def releases(conn: Connection) -> list[str]:
    """The Fuel releases of not-filtered installations (for the filter form)."""
    return sorted({str(value) for value, _ in _counted(conn, Filter(), "fuel_releases")
                   if value is not None})


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
