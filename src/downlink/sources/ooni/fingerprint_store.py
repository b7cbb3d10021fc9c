"""Fingerprints in the database: replaced as a whole, versioned, cached per process.

Until fingerprints are loaded (``downlink ooni fingerprints load FILE``) the shipped
defaults apply. Loading replaces every row and bumps ``ooni_state.fingerprints_version``
in one transaction; scorers compare that version once per batch and reload on change.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy import Connection, select

from downlink.sources.ooni.fingerprints import Fingerprint, Fingerprints, load_default, parse
from downlink.sources.ooni.tables import fingerprints, state

_KEY = "fingerprints_version"
_lock = threading.Lock()
_cache: dict[tuple[str, str], Fingerprints] = {}


def version(conn: Connection) -> str:
    """The current version; "default" while the shipped fingerprints apply."""
    value = conn.execute(select(state.c.value).where(state.c.key == _KEY)).scalar()
    return value or "default"


def replace(conn: Connection, items: Sequence[Fingerprint]) -> str:
    """Replace every fingerprint with ``items``; returns the new version."""
    old = version(conn)
    new = str(int(old) + 1) if old.isdigit() else "1"
    conn.execute(fingerprints.delete())
    if items:
        conn.execute(
            fingerprints.insert(),
            [
                {
                    "name": fp.name,
                    "scope": fp.scope,
                    "location_found": fp.location_found,
                    "pattern_type": fp.pattern_type,
                    "pattern": fp.pattern,
                    "confidence_no_fp": fp.confidence_no_fp,
                    "expected_countries": ",".join(fp.expected_countries),
                    "other_names": fp.other_names,
                }
                for fp in items
            ],
        )
    conn.execute(state.delete().where(state.c.key == _KEY))
    conn.execute(state.insert().values(key=_KEY, value=new))
    return new


def current(conn: Connection) -> Fingerprints:
    """The fingerprints in force, from the process cache when their version is unchanged."""
    ver = version(conn)
    key = (conn.engine.url.render_as_string(hide_password=True), ver)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    if ver == "default":
        loaded = load_default()
    else:
        rows = conn.execute(select(fingerprints).order_by(fingerprints.c.id)).mappings()
        loaded = Fingerprints([parse(dict(r), f"ooni_fingerprints row {r['id']}") for r in rows])
    with _lock:
        for old in [k for k in _cache if k[0] == key[0]]:
            del _cache[old]
        _cache[key] = loaded
    return loaded
