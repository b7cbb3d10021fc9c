"""Release/build filtering: which installations are development or QA builds.

Rules (fuel-stats' ``FILTERING_RULES``) map a Fuel release to what is accepted for it::

    {"9.0": null,                                  # every build of 9.0 counts
     "8.0": {"build_id_1": null,                   # this build counts
             "build_id_2": "2016-03-01"},          # ... from that date on
     "7.0": [{"build_id": "b1", "from_date": "2015-09-01"},
             {"packages_list": ["nailgun-7.0-1", "astute-7.0-2"]}]}

The list form is indexed into the dict form; a package list becomes the sorted tuple of
its names, so its order does not matter. An installation is *filtered* (hidden from the
reports) when:

* there are rules, and its release is not among them; or
* its release has rules (not null), and its ``fuel_release.build_id`` or its sorted
  ``fuel_packages`` is present but not accepted: absent from the rules, or accepted
  only from a date still in the future.

No rules (or empty rules) filter nothing. Dates are read by dateutil in any ISO-like
form (``2015-05-19T11:55:06.369745`` down to ``2015-05-19``), as UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dateutil import parser as date_parser

log = logging.getLogger(__name__)

BuildKey = str | tuple[str, ...]
ReleaseRules = dict[BuildKey, dt.datetime | None]
Rules = dict[str, ReleaseRules | None]


class RulesError(ValueError):
    """The filtering rules cannot be read."""


def _date(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else _naive_utc(value)
    if not isinstance(value, str):
        raise RulesError(f"{where}: a from date must be a string or null, not {value!r}")
    try:
        parsed = date_parser.parse(value)
    except (ValueError, OverflowError) as exc:
        raise RulesError(f"{where}: {value!r} is not a date") from exc
    return parsed if parsed.tzinfo is None else _naive_utc(parsed)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _packages(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise RulesError(f"{where}: packages_list must be a list")
    return tuple(sorted(str(p) for p in value))


def index_release(rules: Any, release: str) -> ReleaseRules | None:
    """Index one release's rules (dict or list form) into the dict form; idempotent."""
    where = f"release {release!r}"
    if rules is None:
        return None
    if isinstance(rules, Mapping):
        indexed: ReleaseRules = {}
        for key, when in rules.items():
            if not isinstance(key, str | tuple):
                raise RulesError(f"{where}: a build key must be a build id or package tuple")
            indexed[key] = _date(when, f"{where}, {key!r}")
        return indexed
    if isinstance(rules, list):
        indexed = {}
        for item in rules:
            if not isinstance(item, Mapping):
                raise RulesError(f"{where}: each rule must be an object")
            build: BuildKey
            if "packages_list" in item:
                build = _packages(item["packages_list"], where)
            elif "build_id" in item:
                build = str(item["build_id"])
            else:
                raise RulesError(f"{where}: a rule needs build_id or packages_list")
            indexed[build] = _date(item.get("from_date"), f"{where}, {build!r}")
        return indexed
    raise RulesError(f"{where}: rules must be null, an object or a list")


def index_rules(rules: Any) -> Rules:
    """Index raw rules (as loaded from JSON, or already indexed) into :data:`Rules`."""
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise RulesError("filtering rules must be an object keyed by release")
    return {str(release): index_release(value, str(release)) for release, value in rules.items()}


def load(path: Path | None) -> Rules:
    """Read rules from a JSON file; no file configured means no rules."""
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise RulesError(f"cannot read filtering rules {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise RulesError(f"filtering rules {path} are not JSON: {exc}") from exc
    return index_rules(raw)


def _filtered_by(key: BuildKey | None, rules: ReleaseRules, now: dt.datetime) -> bool:
    if key is None:
        return False
    if key not in rules:
        return True
    since = rules[key]
    return since is not None and since > now


def release_of(structure: Mapping[str, Any]) -> str | None:
    """The ``fuel_release.release`` of a structure, if it has one."""
    fuel_release = structure.get("fuel_release")
    if isinstance(fuel_release, Mapping):
        release = fuel_release.get("release")
        return release if isinstance(release, str) else None
    return None


def is_filtered(structure: Mapping[str, Any], rules: Rules, now: dt.datetime | None = None) -> bool:
    """Whether an installation structure is hidden by ``rules`` (see the module doc)."""
    if not rules:
        return False
    release = release_of(structure)
    if release not in rules:
        return True
    release_rules = rules[release]
    if release_rules is None:
        return False
    at = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    fuel_release = structure.get("fuel_release")
    build_id = fuel_release.get("build_id") if isinstance(fuel_release, Mapping) else None
    packages = structure.get("fuel_packages")
    package_key = tuple(sorted(str(p) for p in packages)) if isinstance(packages, list) else None
    return _filtered_by(
        build_id if isinstance(build_id, str) else None, release_rules, at
    ) or _filtered_by(package_key, release_rules, at)


class RulesFile:
    """The rules of a settings file, re-read when the file changes (by mtime and size)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._rules: Rules = load(path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[float, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def current(self) -> Rules:
        """The rules now in force (a broken edit keeps the last good rules)."""
        stamp = self._stat()
        if stamp != self._stamp:
            try:
                self._rules = load(self.path)
            except RulesError as exc:
                log.warning("keeping the previous filtering rules: %s", exc)
                return self._rules
            self._stamp = stamp
        return self._rules
