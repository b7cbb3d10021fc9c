"""The dashboard's reports, from the counts kept at ingest (``counts.py``).

Every report reads ``fuel_counts`` (a few rows per day, release and key), never the
environment, node or action-log rows.

Every report takes a :class:`Filter`: not-filtered installations only, optionally of
one Fuel release, optionally last reporting (created or modified) within a date range;
action-log reports take logs received within the range from those installations, and
the failures before a successful deployment the environments whose first successful
deployment was received within it.
Operable environments are those in status ``operational`` or ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from downlink.sources.fuelstats import counts

OPERABLE = ("operational", "error")
SIZE_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, None))
HEALTH_CHECKS = ("verify_networks", "check_networks", "check_before_deployment",
                 "check_dhcp", "multicast_verification")
TOP = 15


@dataclass(frozen=True)
class Filter:
    """Which installations a report covers."""

    release: str | None = None
    since: float | None = None
    until: float | None = None


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


def deployment_time(conn: Connection, f: Filter) -> dict[str, Any]:
    """Average and count of successful top-level deployment durations (s)."""
    found = counts.grouped(conn, "deployment_time", f.release, f.since, f.until)
    count = sum(n for _, n, _ in found)
    total = sum(t for _, _, t in found)
    return {"average_s": round(total / count, 1) if count else None, "deployments": count}


def failures_before_success(conn: Connection, f: Filter) -> dict[str, Any]:
    """Average failed deployments of an environment before its first successful one,
    over the environments whose first successful deployment was received in the range
    (``deployments.py`` keeps them)."""
    found = counts.grouped(conn, counts.FAILURES, f.release, f.since, f.until)
    envs = sum(n for _, n, _ in found)
    fails = sum(t for _, _, t in found)
    return {"average": round(fails / envs, 2) if envs else None, "environments": envs}


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
