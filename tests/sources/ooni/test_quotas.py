"""Quota arithmetic: cost by request time, linear refill, the smallest bucket decides."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from downlink.settings import SettingsError, from_env
from downlink.sources.ooni import quotas
from downlink.sources.ooni.config import config_from
from downlink.sources.ooni.tables import metadata

LIMITS = quotas.Limits(hour=40, day=400, week=200)


def test_cost_is_one_unit_per_10_ms() -> None:
    assert quotas.cost(0.0) == 1
    assert quotas.cost(0.009) == 1
    assert quotas.cost(0.25) == 25
    assert quotas.cost(2.0) == 200


def test_refill_is_linear_and_capped() -> None:
    full = quotas.refilled(None, LIMITS, 0.0)
    assert full == {"hour": 40, "day": 400, "week": 200}
    row = {"updated_at": 0.0, "hour": 0.0, "day": 0.0, "week": 0.0}
    half_hour = quotas.refilled(row, LIMITS, 1800.0)
    assert half_hour["hour"] == pytest.approx(20)
    assert half_hour["day"] == pytest.approx(400 / 48)
    assert quotas.refilled(row, LIMITS, 10 * 86400.0) == full


def test_charge_and_remaining(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        key = quotas.address_key("192.0.2.1", quotas.hash_key(conn))
        assert key != quotas.address_key("192.0.2.2", quotas.hash_key(conn))
        assert len(key) == 16 and "192" not in key
        assert quotas.charge(conn, key, LIMITS, 30, 100.0) == 10  # the hour bucket
        assert quotas.charge(conn, key, LIMITS, 15, 100.0) == -5
        assert quotas.remaining(conn, key, LIMITS, 100.0) == -5
        # 5 units of the hour come back in 450 s.
        assert quotas.remaining(conn, key, LIMITS, 550.0) == pytest.approx(0)
    engine.dispose()


def test_disabled_bucket_never_limits() -> None:
    limits = quotas.Limits(hour=0, day=0, week=10)
    assert limits.enabled
    assert min(quotas.refilled(None, limits, 0.0).values()) == 10
    assert not quotas.Limits(0, 0, 0).enabled


def test_settings_from_the_environment() -> None:
    settings = from_env({"DOWNLINK_OONI_QUOTA_HOUR": "7", "DOWNLINK_OONI_ARCHIVE": "s3://b/p"})
    cfg = config_from(settings)
    assert (cfg.quota_hour, cfg.archive) == (7, "s3://b/p")
    with pytest.raises(SettingsError, match="DOWNLINK_OONI_QUOTA_HOUR"):
        from_env({"DOWNLINK_OONI_QUOTA_HOUR": "-1"})
    with pytest.raises(SettingsError, match="DOWNLINK_OONI_COLLECTOR_ID"):
        from_env({"DOWNLINK_OONI_COLLECTOR_ID": "a_b"})
