"""The questions the fuel-stats JSON API answers, one function each.

Every function takes a read connection. "Not filtered" always means ``is_filtered``
false, which is never NULL here (the original's summary and CSV export disagreed
about NULL).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import Connection, Select, func, select, true

from downlink.sources.fuelstats import counts
from downlink.sources.fuelstats.tables import action_logs, installations, oswl_stats

OPERABLE = ("operational", "error")


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (what the original's JSON showed for dates)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def installation_obj(row: Any) -> dict[str, Any]:
    """The JSON shape of a stored installation."""
    return {
        "id": row["id"],
        "master_node_uid": row["master_node_uid"],
        "structure": row["structure"],
        "creation_date": iso(row["creation_date"]),
        "modification_date": iso(row["modification_date"]),
        "is_filtered": bool(row["is_filtered"]),
        "release": row["release"],
    }


def installation_info(conn: Connection, uid: str) -> dict[str, Any] | None:
    """One installation by master node uid, or None."""
    row = (
        conn.execute(select(installations).where(installations.c.master_node_uid == uid))
        .mappings()
        .first()
    )
    return None if row is None else installation_obj(row)


def _page(conn: Connection, query: Select[Any], limit: int, offset: int) -> tuple[int, list[Any]]:
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
    return int(total), list(rows)


def paged(total: int, objs: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    """The original's paging envelope."""
    return {"paging_params": {"limit": limit, "offset": offset, "total": total}, "objs": objs}


def action_logs_of(conn: Connection, uid: str, limit: int, offset: int) -> dict[str, Any]:
    """A master node's action logs, oldest first."""
    query = (
        select(action_logs)
        .where(action_logs.c.master_node_uid == uid)
        .order_by(action_logs.c.external_id)
    )
    total, rows = _page(conn, query, limit, offset)
    objs = [
        {
            "id": r["id"],
            "master_node_uid": r["master_node_uid"],
            "external_id": r["external_id"],
            "body": r["body"],
            "action_type": r["action_type"],
            "action_name": r["action_name"],
        }
        for r in rows
    ]
    return paged(total, objs, limit, offset)


def oswls_of(
    conn: Connection, uid: str, resource_type: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A master node's OSWL snapshots (of one resource type), oldest first."""
    query = select(oswl_stats).where(oswl_stats.c.master_node_uid == uid)
    if resource_type is not None:
        query = query.where(oswl_stats.c.resource_type == resource_type)
    total, rows = _page(conn, query.order_by(oswl_stats.c.id), limit, offset)
    objs = [
        {
            "id": r["id"],
            "master_node_uid": r["master_node_uid"],
            "external_id": r["external_id"],
            "cluster_id": r["cluster_id"],
            "created_date": r["created_date"],
            "updated_time": r["updated_time"],
            "resource_type": r["resource_type"],
            "resource_checksum": r["resource_checksum"],
            "resource_data": r["resource_data"],
            "version_info": r["version_info"],
        }
        for r in rows
    ]
    return paged(total, objs, limit, offset)


def filtered_installations(conn: Connection, limit: int, offset: int) -> dict[str, Any]:
    """The installations hidden by the filtering rules."""
    query = (
        select(installations)
        .where(installations.c.is_filtered == true())
        .order_by(installations.c.id)
    )
    total, rows = _page(conn, query, limit, offset)
    return paged(total, [installation_obj(r) for r in rows], limit, offset)


def summary(conn: Connection) -> dict[str, Any]:
    """Row counts: installations (filtered or not), action logs, OSWL snapshots."""
    by_flag: dict[Any, int] = dict(
        conn.execute(
            select(installations.c.is_filtered, func.count()).group_by(installations.c.is_filtered)
        ).all()
    )
    filtered = int(by_flag.get(True, 0))
    not_filtered = int(by_flag.get(False, 0))
    return {
        "installation_structures": {
            "total": filtered + not_filtered,
            "filtered": filtered,
            "not_filtered": not_filtered,
        },
        "action_logs": {"total": _count(conn, action_logs)},
        "oswl_stats": {"total": _count(conn, oswl_stats)},
    }


def _count(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def installations_report_empty() -> dict[str, Any]:
    """The report of a release with no installations."""
    return dict(_plain(_empty_report()))


def _empty_report() -> dict[str, Any]:
    return {
        "installations": {"count": 0, "environments_num": Counter()},
        "environments": {
            "count": 0,
            "operable_envs_count": 0,
            "statuses": Counter(),
            "nodes_num": Counter(),
            "hypervisors_num": Counter(),
            "oses_num": Counter(),
        },
    }


def installations_report(conn: Connection) -> dict[str | None, dict[str, Any]]:
    """The web dashboard's report for every release at once (key None: all releases).

    Over not-filtered installations: how many, how many have N environments; over
    their environments: how many, by status; over operable ones (status operational
    or error): how many, by node count, hypervisor and OS (lower-cased). Read from the
    counts kept at ingest (``counts.py``), never the environment rows.
    """
    reports: dict[str | None, dict[str, Any]] = {None: _empty_report()}

    def targets(release: str) -> tuple[str | None, ...]:
        # Release "" is an installation without one: only in the all-releases report.
        return (None, release) if release else (None,)

    plain = (("installations", "installations", "count"),
             ("environments", "environments", "count"),
             ("operable_environments", "environments", "operable_envs_count"))
    keyed = (("clusters_num", "installations", "environments_num"),
             ("statuses", "environments", "statuses"),
             ("environment_sizes", "environments", "nodes_num"),
             ("hypervisors", "environments", "hypervisors_num"),
             ("operating_systems", "environments", "oses_num"))
    for report, part, key in plain:
        for release, _, count in counts.by_release(conn, report):
            for target in targets(release):
                reports.setdefault(target, _empty_report())[part][key] += count
    for report, part, key in keyed:
        for release, value, count in counts.by_release(conn, report):
            if value is None:
                continue
            for target in targets(release):
                reports.setdefault(target, _empty_report())[part][key][str(value)] += count
    return {key: _plain(value) for key, value in reports.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
