"""Find the sources of this server and answer the questions the core asks about them.

A source is a module whose ``source`` attribute is a :class:`~downlink.sources.base.Source`
or a function returning one (``downlink/sources/<name>/source.py`` by convention).
Modules are found three ways, in this order, each module once:

* :data:`BUILTIN`: the sources that ship with Downlink (adding one is one line here);
* the ``downlink.sources`` entry-point group of installed distributions, the entry
  point naming the attribute (``pkg.source:source``);
* the ``DOWNLINK_SOURCES`` setting: comma-separated module names (a source under
  development, or one in a test suite).

:class:`Sources` is the loaded, checked result; the core reads only it: the app
includes its routers and routes, ``security`` opens its ingest paths, the web shell
serves its navigation, templates and static files, ``store.migrate`` applies its
migration folders, the maintenance task calls its purges, ``Metrics`` registers its
metrics and ``Settings`` reads its settings. No core module names a source.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from downlink.sources.base import (
    Consumer,
    JobDriver,
    JobKind,
    NavEntry,
    Source,
    SourceSetting,
    Task,
)

ENTRY_POINT_GROUP = "downlink.sources"

# The sources that ship with Downlink, as module names.
BUILTIN: tuple[str, ...] = (
    "downlink.sources.clearlinux.source",
    "downlink.sources.substrate.source",
    "downlink.sources.ooni.source",
    "downlink.sources.fuelstats.source",
)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ENV = re.compile(r"[A-Z][A-Z0-9_]*")


class SourceError(RuntimeError):
    """A source could not be loaded, or two sources clash."""


@dataclass(frozen=True)
class Sources:
    """The loaded sources, in load order, with what the core reads from all of them."""

    all: tuple[Source, ...] = ()

    def __iter__(self) -> Iterator[Source]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.all)

    def get(self, name: str) -> Source:
        """Return the source called ``name``; :class:`KeyError` if there is none."""
        for s in self.all:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Source names in load order."""
        return tuple(s.name for s in self.all)

    @property
    def ingest_paths(self) -> frozenset[str]:
        """Every source's HTTP ingest paths."""
        return frozenset(p for s in self.all for p in s.ingest_paths)

    @property
    def ingest_websockets(self) -> frozenset[str]:
        """Every source's websocket ingest paths."""
        return frozenset(p for s in self.all for p in s.ingest_websockets)

    @property
    def nav(self) -> tuple[NavEntry, ...]:
        """Every source's navigation tabs, in load order."""
        return tuple(n for s in self.all for n in s.nav)

    @property
    def consumers(self) -> tuple[tuple[Source, Consumer], ...]:
        """Every consumer with the source that brings it."""
        return tuple((s, c) for s in self.all for c in s.consumers)

    @property
    def job_kinds(self) -> dict[str, JobKind]:
        """Every source's job kinds by kind name."""
        return {k.kind: k for s in self.all for k in s.job_kinds}

    @property
    def job_drivers(self) -> dict[str, JobDriver]:
        """Every source's self-driven job kinds by kind name."""
        return {d.kind: d for s in self.all for d in s.job_drivers}

    @property
    def tasks(self) -> tuple[tuple[Source, Task], ...]:
        """Every source's periodic background tasks, with their source."""
        return tuple((s, t) for s in self.all for t in s.tasks)

    @property
    def migrations(self) -> tuple[tuple[str, Path], ...]:
        """(source name, folder) of every source with migrations of its own."""
        return tuple((s.name, s.migrations) for s in self.all if s.migrations is not None)

    @property
    def templates(self) -> dict[str, Path]:
        """Template folders by source name (templates load as ``<name>/<file>``)."""
        return {s.name: s.templates for s in self.all if s.templates is not None}

    @property
    def static(self) -> dict[str, Path]:
        """Static folders by source name (served under ``/static/sources/<name>/``)."""
        return {s.name: s.static for s in self.all if s.static is not None}

    @property
    def settings(self) -> tuple[tuple[Source, SourceSetting], ...]:
        """Every source's settings, with their source."""
        return tuple((s, setting) for s in self.all for setting in s.settings)

    def metadata(self) -> list[Any]:
        """Every source's SQLAlchemy ``MetaData`` (tables of its own)."""
        return [s.metadata for s in self.all if s.metadata is not None]


def _as_source(obj: Any, where: str) -> Source:
    found = obj() if callable(obj) and not isinstance(obj, Source) else obj
    if not isinstance(found, Source):
        raise SourceError(f"{where} is not a Source (got {type(found).__name__})")
    return found


def _from_module(name: str) -> Source:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise SourceError(f"cannot import source module {name!r}: {exc}") from exc
    if not hasattr(module, "source"):
        raise SourceError(f"source module {name!r} has no `source` (a Source or a function)")
    try:
        return _as_source(module.source, f"{name}.source")
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure names the source module
        raise SourceError(f"source module {name!r} failed to build its Source: {exc}") from exc


def _from_entry_points(skip: set[str]) -> list[Source]:
    found: list[Source] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value.split(":")[0] in skip:
            continue  # also built in or listed in the setting: load it once
        try:
            found.append(_as_source(ep.load(), f"entry point {ep.name!r}"))
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - any import failure names the entry point
            raise SourceError(f"cannot load source entry point {ep.name!r}: {exc}") from exc
    return found


def check(sources: Sequence[Source]) -> Sources:
    """Check names, paths, tables, settings, job kinds and tasks are unique; return them."""
    seen: dict[str, str] = {}

    def claim(kind: str, key: str, owner: str) -> None:
        other = seen.get(f"{kind}:{key}")
        if other is not None:
            raise SourceError(f"sources {other!r} and {owner!r} both declare {kind} {key!r}")
        seen[f"{kind}:{key}"] = owner

    for s in sources:
        if not _NAME.fullmatch(s.name):
            raise SourceError(f"source name {s.name!r} must be a lowercase slug (a-z, 0-9, _)")
        claim("source", s.name, s.name)
        for path in sorted(s.ingest_paths):
            claim("ingest path", path, s.name)
        for path in sorted(s.ingest_websockets):
            claim("ingest websocket", path, s.name)
        for setting in s.settings:
            if not _ENV.fullmatch(setting.env):
                raise SourceError(f"source {s.name!r}: setting env {setting.env!r} is not A_NAME")
            claim("setting", setting.env, s.name)
        for consumer in s.consumers:
            claim("consumer", consumer.name, s.name)
        for kind in s.job_kinds:
            claim("job kind", kind.kind, s.name)
        for driver in s.job_drivers:
            claim("job kind", driver.kind, s.name)
        for task in s.tasks:
            claim("task", task.name, s.name)
        if s.metadata is not None:
            for table in s.metadata.tables:
                claim("table", table, s.name)
        if s.migrations is not None and not Path(s.migrations).is_dir():
            raise SourceError(f"source {s.name!r}: migrations folder {s.migrations} is missing")
        for folder in (s.templates, s.static):
            if folder is not None and not Path(folder).is_dir():
                raise SourceError(f"source {s.name!r}: folder {folder} is missing")
        if s.retention is not None and s.retention not in {x.name for x in s.settings}:
            raise SourceError(f"source {s.name!r}: retention names no setting {s.retention!r}")
    return Sources(tuple(sources))


@lru_cache(maxsize=16)
def load(modules: tuple[str, ...] = (), *, use_entry_points: bool = True) -> Sources:
    """Load the built-in sources, the entry points and ``modules``; check and return them.

    Cached by its arguments: every app and settings object of a process with the same
    ``DOWNLINK_SOURCES`` shares one :class:`Sources`.
    """
    builtin = list(dict.fromkeys(BUILTIN))
    extra = [m for m in dict.fromkeys(modules) if m.lower() != "none" and m not in builtin]
    found = [_from_module(m) for m in builtin]
    if use_entry_points:
        found.extend(_from_entry_points({*builtin, *extra}))
    found.extend(_from_module(m) for m in extra)
    return check(found)


def defaults(sources: Sources) -> dict[str, dict[str, Any]]:
    """Every source's settings at their defaults: ``{source: {setting: value}}``."""
    out: dict[str, dict[str, Any]] = {s.name: {} for s in sources}
    for source, setting in sources.settings:
        out[source.name][setting.name] = setting.default
    return out


def merged(
    sources: Sources, given: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Defaults overlaid with ``given`` values; unknown sources or names are errors."""
    out = defaults(sources)
    for name, values in given.items():
        if name not in out:
            raise SourceError(f"settings given for unknown source {name!r}")
        for key, value in values.items():
            if key not in out[name]:
                raise SourceError(f"source {name!r} has no setting {key!r}")
            out[name][key] = value
    return out
