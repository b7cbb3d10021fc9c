"""Environments and nodes of an installation structure, as flat rows for the reports.

Structures come from many Fuel releases (6.0 to 9.x) and carry whatever each one
sent; every field here is optional and read defensively (a wrong type reads as
missing). Hypervisor and OS names are lower-cased, as the original reports did.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _lower(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def cluster_row(cluster: Any) -> dict[str, Any]:
    """One ``fuel_clusters`` row (without ``installation_id``)."""
    return {
        "cluster_id": _int(_get(cluster, "id")),
        "status": _text(_get(cluster, "status")),
        "nodes_num": _int(_get(cluster, "nodes_num")),
        "hypervisor": _lower(_get(cluster, "attributes", "libvirt_type")),
        "os": _lower(_get(cluster, "release", "os")),
        "release_version": _text(_get(cluster, "release", "version")),
        "mode": _text(_get(cluster, "mode")),
        "plugins": len(_list(_get(cluster, "installed_plugins"))),
    }


def roles_of(node: Any) -> str:
    """A node's roles as one sorted combination, e.g. ``cinder+compute``."""
    roles = sorted({r for r in _list(_get(node, "roles")) if isinstance(r, str) and r})
    return "+".join(roles)


def node_row(cluster_id: int | None, node: Any) -> dict[str, Any]:
    """One ``fuel_nodes`` row (without ``installation_id``)."""
    return {
        "cluster_id": cluster_id,
        "node_id": _int(_get(node, "id")),
        "roles": roles_of(node),
        "status": _text(_get(node, "status")),
        "os": _lower(_get(node, "os")),
        "manufacturer": _text(_get(node, "manufacturer"))
        or _text(_get(node, "meta", "system", "manufacturer")),
        "platform": _text(_get(node, "meta", "system", "product")),
        "cpu_total": _int(_get(node, "meta", "cpu", "total")),
        "memory_total": _int(_get(node, "meta", "memory", "total")),
    }


def rows_of(structure: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cluster rows and node rows of a structure."""
    cluster_rows: list[dict[str, Any]] = []
    node_rows: list[dict[str, Any]] = []
    for cluster in _list(structure.get("clusters")):
        row = cluster_row(cluster)
        cluster_rows.append(row)
        node_rows.extend(node_row(row["cluster_id"], n) for n in _list(_get(cluster, "nodes")))
    return cluster_rows, node_rows


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        found = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=dt.UTC)


def task_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The report columns of an action log: environment, end status, duration, level."""
    info = body.get("additional_info")
    info = info if isinstance(info, Mapping) else {}
    start, end = _time(body.get("start_timestamp")), _time(body.get("end_timestamp"))
    duration = (end - start).total_seconds() if start and end and end >= start else None
    return {
        "cluster_id": _int(body.get("cluster_id")),
        "ended_status": _text(info.get("ended_with_status")),
        "duration_s": duration,
        "top_level": info.get("parent_task_id") is None,
    }
