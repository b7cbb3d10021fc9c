"""The OONI source's settings, declared once and read into an :class:`OoniConfig`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from downlink.settings import Settings, SettingsError
from downlink.sources.base import SourceSetting

SETTINGS: tuple[SourceSetting, ...] = (
    SourceSetting(
        "max_body_bytes",
        "DOWNLINK_OONI_MAX_BODY_BYTES",
        8 * 1024 * 1024,
        "Largest OONI submission body accepted, as sent (413 above it, refused before "
        "reading when Content-Length says so). DOWNLINK_MAX_BODY_BYTES also applies.",
    ),
    SourceSetting(
        "max_decompressed_bytes",
        "DOWNLINK_OONI_MAX_DECOMPRESSED_BYTES",
        64 * 1024 * 1024,
        "Largest size a zstd-compressed OONI submission may decompress to (413 above it; "
        "decompression stops there, so a zstd bomb is never expanded).",
    ),
    SourceSetting(
        "collector_id",
        "DOWNLINK_OONI_COLLECTOR_ID",
        "1",
        "Collector number written into minted OONI report ids (the n<id> part).",
    ),
    SourceSetting(
        "quota_hour",
        "DOWNLINK_OONI_QUOTA_HOUR",
        4000,
        "Per-address OONI API quota per hour, in units of 10 ms of request time "
        "(OONI production: 4000). 0 disables quotas.",
    ),
    SourceSetting(
        "quota_day",
        "DOWNLINK_OONI_QUOTA_DAY",
        400000,
        "Per-address OONI API quota per day, in units of 10 ms of request time.",
    ),
    SourceSetting(
        "quota_week",
        "DOWNLINK_OONI_QUOTA_WEEK",
        200000,
        "Per-address OONI API quota per 7 days, in units of 10 ms of request time.",
    ),
)


@dataclass(frozen=True)
class OoniConfig:
    """Effective OONI settings."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    collector_id: str = "1"
    quota_hour: int = 4000
    quota_day: int = 400000
    quota_week: int = 200000


def _parse(setting: SourceSetting, raw: str) -> Any:
    if isinstance(setting.default, int):
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{setting.env} must be an integer, not {raw!r}") from None
        if value < 0:
            raise SettingsError(f"{setting.env} must not be negative")
        return value
    return raw


def config_from(
    settings: Settings | None, environ: Mapping[str, str] | None = None
) -> OoniConfig:
    """Values from ``settings.sources["ooni"]`` when the core provides them, else the env."""
    provided: Mapping[str, Any] = (getattr(settings, "sources", None) or {}).get("ooni", {})
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in provided:
            values[setting.name] = provided[setting.name]
        elif setting.env in env:
            values[setting.name] = _parse(setting, env[setting.env])
        else:
            values[setting.name] = setting.default
    return OoniConfig(**values)
