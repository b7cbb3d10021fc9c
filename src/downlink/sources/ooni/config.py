"""The OONI source's settings, declared once and read into an :class:`OoniConfig`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from downlink.settings import Settings
from downlink.sources.base import SourceSetting


def _non_negative(value: Any) -> None:
    if value < 0:
        raise ValueError("must not be negative")


def _collector_id(value: Any) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]{1,8}", str(value)):
        raise ValueError("must be 1 to 8 letters or digits")


SETTINGS: tuple[SourceSetting, ...] = (
    SourceSetting(
        "max_body_bytes",
        "DOWNLINK_OONI_MAX_BODY_BYTES",
        8 * 1024 * 1024,
        "Largest OONI submission body accepted, as sent (413 above it, refused before "
        "reading when Content-Length says so). DOWNLINK_MAX_BODY_BYTES also applies.",
        _non_negative,
    ),
    SourceSetting(
        "max_decompressed_bytes",
        "DOWNLINK_OONI_MAX_DECOMPRESSED_BYTES",
        64 * 1024 * 1024,
        "Largest size a zstd-compressed OONI submission may decompress to (413 above it; "
        "decompression stops there, so a zstd bomb is never expanded).",
        _non_negative,
    ),
    SourceSetting(
        "collector_id",
        "DOWNLINK_OONI_COLLECTOR_ID",
        "1",
        "Collector number written into minted OONI report ids (the n<id> part).",
        _collector_id,
    ),
    SourceSetting(
        "quota_hour",
        "DOWNLINK_OONI_QUOTA_HOUR",
        4000,
        "Per-address OONI API quota per hour, in units of 10 ms of request time "
        "(OONI production: 4000). 0 on all three disables quotas.",
        _non_negative,
    ),
    SourceSetting(
        "quota_day",
        "DOWNLINK_OONI_QUOTA_DAY",
        400000,
        "Per-address OONI API quota per day, in units of 10 ms of request time.",
        _non_negative,
    ),
    SourceSetting(
        "quota_week",
        "DOWNLINK_OONI_QUOTA_WEEK",
        200000,
        "Per-address OONI API quota per 7 days, in units of 10 ms of request time.",
        _non_negative,
    ),
    SourceSetting(
        "archive",
        "DOWNLINK_OONI_ARCHIVE",
        "ooni-archive",
        "Where the server (and `downlink ooni archive`) writes OONI's hourly raw "
        "archive: a directory, file:// or s3://bucket/prefix URL. Empty disables it. "
        "Once an hour is archived, retention only deletes measurements already archived.",
    ),
    SourceSetting(
        "archive_every_s",
        "DOWNLINK_OONI_ARCHIVE_EVERY_S",
        60.0,
        "Seconds between a server process's looks for OONI hours to archive (the task "
        "ooni_archive, one process at a time); 0: the server never archives, run "
        "`downlink ooni archive` instead.",
        _non_negative,
    ),
    SourceSetting(
        "archive_grace_s",
        "DOWNLINK_OONI_ARCHIVE_GRACE_S",
        300.0,
        "Seconds after the end of an hour before its OONI measurements are archived "
        "(submissions still being committed when the hour ends).",
        _non_negative,
    ),
    SourceSetting(
        "s3_endpoint",
        "DOWNLINK_OONI_S3_ENDPOINT",
        "",
        "Endpoint URL of the S3-compatible storage for an s3:// archive (empty: AWS). "
        "Credentials come from the usual AWS_* variables.",
    ),
    SourceSetting(
        "retention_hours",
        "DOWNLINK_OONI_RETENTION_HOURS",
        0.0,
        "Delete OONI measurements (log and scores) received more than this many hours "
        "ago; 0 keeps everything.",
        _non_negative,
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
    retention_hours: float = 0.0
    archive: str = "ooni-archive"
    archive_every_s: float = 60.0
    archive_grace_s: float = 300.0
    s3_endpoint: str = ""


def config_from(settings: Settings | None) -> OoniConfig:
    """The OONI values of ``settings.sources["ooni"]`` (defaults for what is absent)."""
    given: Mapping[str, Any] = (getattr(settings, "sources", None) or {}).get("ooni", {})
    fields = OoniConfig.__dataclass_fields__
    return OoniConfig(**{k: v for k, v in given.items() if k in fields})
