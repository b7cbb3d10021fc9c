"""CSV exports (reference B7), streamed row by row in constant memory.

Each export is a generator of byte chunks that reads the database through a
server-side cursor (``stream_results``, ``yield_per``) and writes CSV into a small
buffer flushed every :data:`FLUSH_BYTES`; the whole-set archive streams a zip of all
of them (written with data descriptors, so it needs no seeking and no temporary file).

* ``clusters``: one row per environment of every not-filtered installation created or
  modified in the window, with the installation's fields and the status of the latest
  ``verify_networks`` task of that environment that ended in the window.
* ``nodes``: one row per node, with its environment, hardware and the installation.
* ``plugins``: one row per installed plugin per environment.
* ``<resource type>`` (``vm``, ``flavor``, ``volume``, ``image``, ``tenant``,
  ``keystone_user``, ...): the OSWL daily time series. For each day from the first
  snapshot in the window to ``to_date``, the latest snapshot of each (master node,
  environment, resource type) as of that day, one row per resource; days carried over
  from an older snapshot have no added/modified/removed marks; a key stops once its
  installation has not reported for longer than that day; a snapshot repeating the
  previous one's checksum (Fuel re-sending under a new id) changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, false, func, or_, select

from downlink.sources.fuelstats.tables import action_logs, installations, oswl_stats

FLUSH_BYTES = 64 * 1024
YIELD_PER = 200
DEFAULT_DAYS = 90

Path = tuple[str, ...]


@dataclass(frozen=True)
class Window:
    """A report's date window, whole days, ``to_date`` included."""

    from_date: dt.date
    to_date: dt.date

    @property
    def start_ts(self) -> float:
        """The window's first instant (epoch s, UTC)."""
        return dt.datetime.combine(self.from_date, dt.time(), dt.UTC).timestamp()

    @property
    def end_ts(self) -> float:
        """The instant after the window (epoch s, UTC)."""
        day = self.to_date + dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def window(from_date: str | None, to_date: str | None, today: dt.date | None = None) -> Window:
    """Parse ``YYYY-MM-DD`` bounds (default: the last 90 days); ValueError if bad."""
    end = _day(to_date, "to_date") if to_date else (today or dt.datetime.now(dt.UTC).date())
    start = _day(from_date, "from_date") if from_date else end - dt.timedelta(days=DEFAULT_DAYS)
    if start > end:
        raise ValueError("from_date is after to_date")
    return Window(start, end)


def _day(value: str, name: str) -> dt.date:
    try:
        if len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date YYYY-MM-DD, not {value!r}") from None


def get(value: Any, path: Path) -> Any:
    """The value at ``path`` of nested mappings, or None."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def cell(value: Any) -> Any:
    """A CSV cell: lists of scalars space-joined, containers counted, None empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return " ".join(str(v) for v in value)
        return len(value)
    if isinstance(value, dict):
        return len(value)
    return value


INSTALLATION_COLUMNS: list[tuple[str, Path]] = [
    ("master_node_uid", ("master_node_uid",)),
    ("structure.fuel_release.release", ("fuel_release", "release")),
    ("structure.fuel_release.build_id", ("fuel_release", "build_id")),
    ("structure.fuel_release.feature_groups", ("fuel_release", "feature_groups")),
    ("structure.fuel_packages", ("fuel_packages",)),
    ("structure.clusters_num", ("clusters_num",)),
    ("structure.allocated_nodes_num", ("allocated_nodes_num",)),
    ("structure.unallocated_nodes_num", ("unallocated_nodes_num",)),
]

CLUSTER_COLUMNS: list[tuple[str, Path]] = [
    ("id", ("id",)),
    ("fuel_version", ("fuel_version",)),
    ("mode", ("mode",)),
    ("status", ("status",)),
    ("nodes_num", ("nodes_num",)),
    ("release.version", ("release", "version")),
    ("release.os", ("release", "os")),
    ("release.name", ("release", "name")),
    ("net_provider", ("net_provider",)),
    ("is_customized", ("is_customized",)),
    ("network_configuration.segmentation_type", ("network_configuration", "segmentation_type")),
    ("network_configuration.net_l23_provider", ("network_configuration", "net_l23_provider")),
    ("attributes.libvirt_type", ("attributes", "libvirt_type")),
    ("attributes.provision_method", ("attributes", "provision_method")),
    ("attributes.volumes_ceph", ("attributes", "volumes_ceph")),
    ("attributes.images_ceph", ("attributes", "images_ceph")),
    ("attributes.volumes_lvm", ("attributes", "volumes_lvm")),
    ("attributes.murano", ("attributes", "murano")),
    ("attributes.sahara", ("attributes", "sahara")),
    ("attributes.ironic", ("attributes", "ironic")),
    ("attributes.neutron_dvr", ("attributes", "neutron_dvr")),
    ("attributes.neutron_l3_ha", ("attributes", "neutron_l3_ha")),
    ("installed_plugins.count", ("installed_plugins",)),
]

NODE_COLUMNS: list[tuple[str, Path]] = [
    ("id", ("id",)),
    ("roles", ("roles",)),
    ("pending_roles", ("pending_roles",)),
    ("status", ("status",)),
    ("os", ("os",)),
    ("online", ("online",)),
    ("manufacturer", ("manufacturer",)),
    ("meta.system.product", ("meta", "system", "product")),
    ("meta.system.manufacturer", ("meta", "system", "manufacturer")),
    ("meta.cpu.total", ("meta", "cpu", "total")),
    ("meta.cpu.real", ("meta", "cpu", "real")),
    ("meta.memory.total", ("meta", "memory", "total")),
    ("meta.disks.count", ("meta", "disks")),
    ("meta.interfaces.count", ("meta", "interfaces")),
]

PLUGIN_COLUMNS: list[tuple[str, Path]] = [
    ("name", ("name",)),
    ("version", ("version",)),
    ("releases", ("releases",)),
    ("fuel_version", ("fuel_version",)),
    ("package_version", ("package_version",)),
    ("is_hotpluggable", ("is_hotpluggable",)),
    ("groups", ("groups",)),
    ("licenses", ("licenses",)),
]


class _Csv:
    """A CSV writer over a small buffer, drained by :meth:`take`."""

    def __init__(self, header: Sequence[str]) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        self.writer.writerow(header)

    def row(self, values: Sequence[Any]) -> bytes | None:
        """Write a row; return a chunk once the buffer is big enough."""
        self.writer.writerow(values)
        if self.buffer.tell() >= FLUSH_BYTES:
            return self.take()
        return None

    def take(self) -> bytes:
        """Everything buffered, as UTF-8."""
        data = self.buffer.getvalue().encode("utf-8")
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


def _installations(conn: Connection, win: Window) -> Iterator[tuple[str, Any]]:
    """(uid, structure) of not-filtered installations created or modified in ``win``."""
    i = installations.c
    in_window = or_(
        and_(i.creation_date >= win.start_ts, i.creation_date < win.end_ts),
        and_(i.modification_date >= win.start_ts, i.modification_date < win.end_ts),
    )
    rows = conn.execution_options(stream_results=True, yield_per=YIELD_PER).execute(
        select(i.master_node_uid, i.structure)
        .where(i.is_filtered == false(), in_window)
        .order_by(i.id)
    )
    for uid, structure in rows:
        yield uid, structure if isinstance(structure, dict) else {}


def latest_verify_status(
    rows: Iterable[tuple[str, int, Any]],
) -> dict[tuple[str, Any], str]:
    """ended_with_status of the latest (highest id) task per (node, body's cluster_id),
    from ``(master_node_uid, external_id, body)`` of verify_networks tasks."""
    found: dict[tuple[str, Any], tuple[int, str]] = {}
    for uid, ext, body in rows:
        key = (uid, get(body, ("cluster_id",)))
        status = get(body, ("additional_info", "ended_with_status"))
        if isinstance(status, str) and (key not in found or found[key][0] < ext):
            found[key] = (int(ext), status)
    return {key: status for key, (_, status) in found.items()}


def verify_networks(conn: Connection, win: Window) -> dict[tuple[str, Any], str]:
    """ended_with_status of the latest verify_networks task per (node, cluster) received
    in the window (the ClickHouse twin: ``analytics.verify_networks``)."""
    a = action_logs.c
    rows = conn.execution_options(stream_results=True, yield_per=YIELD_PER).execute(
        select(a.master_node_uid, a.external_id, a.body).where(
            a.action_name == "verify_networks",
            a.action_type == "nailgun_task",
            a.ts_reception >= win.start_ts,
            a.ts_reception < win.end_ts,
        )
    )
    return latest_verify_status((uid, int(ext), body) for uid, ext, body in rows)


Verify = Mapping[tuple[str, Any], str]


def clusters_csv(conn: Connection, win: Window, verify: Verify | None = None) -> Iterator[bytes]:
    """clusters.csv (``verify``: the verify_networks statuses, read from ``conn`` if
    not given: the analytics store's, read before the response starts)."""
    if verify is None:
        verify = verify_networks(conn, win)
    out = _Csv(
        [name for name, _ in INSTALLATION_COLUMNS]
        + [f"cluster.{name}" for name, _ in CLUSTER_COLUMNS]
        + ["verify_networks_status"]
    )
    for uid, structure in _installations(conn, win):
        top = [cell(uid if p == ("master_node_uid",) else get(structure, p))
               for _, p in INSTALLATION_COLUMNS]
        for cluster in structure.get("clusters") or []:
            cid = get(cluster, ("id",))
            chunk = out.row(top + [cell(get(cluster, p)) for _, p in CLUSTER_COLUMNS]
                            + [verify.get((uid, cid), "")])
            if chunk:
                yield chunk
    yield out.take()


def nodes_csv(conn: Connection, win: Window) -> Iterator[bytes]:
    """nodes.csv."""
    out = _Csv(["master_node_uid", "cluster_id", "cluster_fuel_version", "fuel_packages"]
               + [f"node.{name}" for name, _ in NODE_COLUMNS])
    for uid, structure in _installations(conn, win):
        packages = cell(structure.get("fuel_packages"))
        for cluster in structure.get("clusters") or []:
            head = [uid, cell(get(cluster, ("id",))), cell(get(cluster, ("fuel_version",))),
                    packages]
            for node in get(cluster, ("nodes",)) or []:
                chunk = out.row(head + [cell(get(node, p)) for _, p in NODE_COLUMNS])
                if chunk:
                    yield chunk
    yield out.take()


def plugins_csv(conn: Connection, win: Window) -> Iterator[bytes]:
    """plugins.csv."""
    out = _Csv(["master_node_uid", "cluster_id", "cluster_fuel_version"]
               + [f"plugin.{name}" for name, _ in PLUGIN_COLUMNS])
    for uid, structure in _installations(conn, win):
        for cluster in structure.get("clusters") or []:
            head = [uid, cell(get(cluster, ("id",))), cell(get(cluster, ("fuel_version",)))]
            for plugin in get(cluster, ("installed_plugins",)) or []:
                chunk = out.row(head + [cell(get(plugin, p)) for _, p in PLUGIN_COLUMNS])
                if chunk:
                    yield chunk
    yield out.take()


RESOURCE_FIELDS: dict[str, list[str]] = {
    "vm": ["id", "status", "tenant_id", "host_id", "created_at", "power_state", "flavor_id",
           "image_id"],
    "flavor": ["id", "ram", "vcpus", "ephemeral", "disk", "swap"],
    "image": ["id", "minDisk", "minRam", "sizeBytes", "created_at", "updated_at"],
    "tenant": ["id", "enabled_flag"],
    "keystone_user": ["id", "enabled_flag", "tenant_id"],
    "volume": ["id", "availability_zone", "encrypted_flag", "bootable_flag", "status",
               "volume_type", "size", "snapshot_id", "tenant_id"],
    "security_group": ["id", "tenant_id"],
    "cluster_stats": ["id"],
}
RESOURCE_TYPES = tuple(RESOURCE_FIELDS)
VERSION_FIELDS = ["fuel_version", "release_version", "release_name", "release_os",
                  "environment_version"]


def _last_sync(conn: Connection) -> dict[str, dt.date]:
    i = installations.c
    last = func.coalesce(i.modification_date, i.creation_date)
    return {
        uid: dt.datetime.fromtimestamp(ts, dt.UTC).date()
        for uid, ts in conn.execute(select(i.master_node_uid, last).where(i.is_filtered == false()))
    }


def oswl_csv(conn: Connection, win: Window, resource_type: str) -> Iterator[bytes]:
    """``<resource_type>.csv``: the daily time series (see the module doc)."""
    fields = RESOURCE_FIELDS.get(resource_type, ["id"])
    out = _Csv(["master_node_uid", "cluster_id", "stats_on_date", "resource_type"]
               + [f"version_info.{f}" for f in VERSION_FIELDS]
               + [f"{resource_type}.{f}" for f in fields]
               + ["is_added", "is_modified", "is_removed"])
    synced = _last_sync(conn)
    o = oswl_stats.c
    rows = conn.execution_options(stream_results=True, yield_per=YIELD_PER).execute(
        select(o.master_node_uid, o.cluster_id, o.created_date, o.resource_checksum,
               o.resource_data, o.version_info)
        .where(o.resource_type == resource_type, o.created_date <= win.to_date.isoformat())
        .order_by(o.created_date, o.id)
    )
    horizon: dict[tuple[str, int], dict[str, Any]] = {}
    day: dt.date | None = None
    for uid, cluster_id, created, checksum, data, version in rows:
        if uid not in synced:
            continue
        created_day = dt.date.fromisoformat(created)
        while day is not None and day < created_day:
            for chunk in _emit_day(out, horizon, day, win, synced, resource_type, fields):
                yield chunk
            day += dt.timedelta(days=1)
        if day is None:
            day = created_day
        key = (uid, int(cluster_id))
        previous = horizon.get(key)
        if previous is not None and previous["checksum"] == checksum:
            continue  # the same resources re-sent under a new id (bug 1524820)
        horizon[key] = {"checksum": checksum, "data": data or {}, "version": version or {},
                        "day": created_day}
    while day is not None and day <= win.to_date:
        for chunk in _emit_day(out, horizon, day, win, synced, resource_type, fields):
            yield chunk
        day += dt.timedelta(days=1)
    yield out.take()


def _emit_day(out: _Csv, horizon: dict[tuple[str, int], dict[str, Any]], day: dt.date,
              win: Window, synced: Mapping[str, dt.date], resource_type: str,
              fields: list[str]) -> Iterator[bytes]:
    if day < win.from_date:
        return
    for (uid, cluster_id), snap in list(horizon.items()):
        if synced.get(uid, day) < day and snap["day"] < day:
            continue
        fresh = snap["day"] == day
        data = snap["data"]
        marks: dict[Any, list[bool]] = {}
        for flag, name in enumerate(("added", "modified", "removed")):
            if not fresh:
                continue
            for res in data.get(name) or []:
                rid = get(res, ("id",))
                marks.setdefault(rid, [False, False, False])[flag] = True
        version = snap["version"] if isinstance(snap["version"], dict) else {}
        head = [uid, cluster_id, day.isoformat(), resource_type] + [
            cell(version.get(f)) for f in VERSION_FIELDS]
        seen: set[Any] = set()
        for res in data.get("current") or []:
            rid = get(res, ("id",))
            seen.add(rid)
            flags = marks.get(rid, [False, False, False])
            chunk = out.row(head + [cell(get(res, (f,))) for f in fields] + flags)
            if chunk:
                yield chunk
        for rid, flags in marks.items():
            if rid not in seen and flags[2]:
                removed = next((r for r in data.get("removed") or [] if get(r, ("id",)) == rid),
                               {"id": rid})
                chunk = out.row(head + [cell(get(removed, (f,))) for f in fields] + flags)
                if chunk:
                    yield chunk


Export = Callable[[Connection, Window], Iterator[bytes]]

EXPORTS: dict[str, Export] = {
    "clusters": clusters_csv,
    "nodes": nodes_csv,
    "plugins": plugins_csv,
    **{
        kind: (lambda conn, win, kind=kind: oswl_csv(conn, win, kind))  # type: ignore[misc]
        for kind in RESOURCE_TYPES
    },
}


def stream(engine: Engine, export: Export, win: Window) -> Iterator[bytes]:
    """One export over its own read connection (closed when the stream ends)."""
    with engine.connect() as conn:
        yield from export(conn, win)


class _Pipe(io.RawIOBase):
    """An unseekable sink collecting what zipfile writes, drained between files."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data


def with_verify(name: str, verify: Verify | None) -> Export:
    """The export of ``name`` (KeyError if unknown), the clusters one with ``verify``."""
    export = EXPORTS[name]
    if name == "clusters" and verify is not None:
        return lambda conn, win: clusters_csv(conn, win, verify)
    return export


def archive(engine: Engine, win: Window, verify: Verify | None = None) -> Iterator[bytes]:
    """Every report as one zip, streamed file by file, chunk by chunk."""
    pipe = _Pipe()
    with engine.connect() as conn, zipfile.ZipFile(
        pipe, mode="w", compression=zipfile.ZIP_DEFLATED
    ) as zf:
        for name in EXPORTS:
            export = with_verify(name, verify)
            with zf.open(f"{name}.csv", mode="w") as member:
                for chunk in export(conn, win):
                    member.write(chunk)
                    data = pipe.drain()
                    if data:
                        yield data
            yield pipe.drain()
    yield pipe.drain()
