"""Each source's retention setting is its ClickHouse table's TTL, changed at the next start.

OONI's ``DOWNLINK_OONI_RETENTION_HOURS`` expires ``ooni_fastpath``; substrate's
``DOWNLINK_SUBSTRATE_RETENTION_HOURS`` expires its non-audit rows of ``records`` (its
purge's ``records_expiry``); Clear Linux and fuel-stats have no retention setting, so
their tables keep everything.
"""

from __future__ import annotations

import re
from pathlib import Path

from downlink.analytics.client import connect
from downlink.settings import Settings
from tests.analytics.helpers import app

TABLES = ("records", "ooni_fastpath", "clearlinux_crashes", "fuel_action_logs")


def _ttls(analytics_url: str) -> dict[str, str]:
    """The TTL clause of each table as ClickHouse reports it ("" without one)."""
    ch = connect(analytics_url)
    rows = ch.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
        {"db": ch.database},
    )
    found = {str(name): str(engine) for name, engine in rows}
    out = {}
    for table in TABLES:
        match = re.search(r"\bTTL (.*?)(?: SETTINGS |$)", found[table])
        out[table] = match.group(1) if match else ""
    return out


def _started(db: str, analytics_url: str, ooni_hours: float, substrate_hours: float) -> None:
    settings = Settings(database_url=db, batch_wait_ms=1.0, analytics_url=analytics_url,
                        sources={"ooni": {"retention_hours": ooni_hours},
                                 "substrate": {"retention_hours": substrate_hours}})
    with app(settings) as client:
        assert client.get("/-/health").status_code == 200


def test_retention_settings_are_ttls(tmp_path: Path, analytics_url: str) -> None:
    db = f"sqlite:///{tmp_path / 'ttl.db'}"
    _started(db, analytics_url, ooni_hours=5, substrate_hours=7)
    ttls = _ttls(analytics_url)
    assert "ts_reception" in ttls["ooni_fastpath"]
    assert re.search(r"\b18000\b", ttls["ooni_fastpath"])  # 5 h
    assert re.search(r"\b25200\b", ttls["records"])  # 7 h, substrate's non-audit rows only
    assert "substrate" in ttls["records"] and "audit" in ttls["records"]
    assert ttls["clearlinux_crashes"] == ttls["fuel_action_logs"] == ""

    # Changed settings change the TTLs at the next start; 0 keeps everything.
    _started(db, analytics_url, ooni_hours=0, substrate_hours=9)
    ttls = _ttls(analytics_url)
    assert ttls["ooni_fastpath"] == ""
    assert re.search(r"\b32400\b", ttls["records"]) and "25200" not in ttls["records"]
    assert ttls["clearlinux_crashes"] == ttls["fuel_action_logs"] == ""

    _started(db, analytics_url, ooni_hours=2, substrate_hours=0)
    ttls = _ttls(analytics_url)
    assert re.search(r"\b7200\b", ttls["ooni_fastpath"]) and ttls["records"] == ""
