"""The fuel-stats source's settings (declared as :class:`SourceSetting` entries)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downlink.settings import SettingsError
from downlink.sources.base import SourceSetting
from downlink.sources.fuelstats.privacy import DEFAULT_SECRET_KEYS

SETTINGS: tuple[SourceSetting, ...] = (
    SourceSetting(
        "filtering_rules",
        "DOWNLINK_FUEL_FILTERING_RULES",
        "",
        "Path of a JSON file of release/build filtering rules (FILTERING_RULES); "
        "empty filters nothing. Re-read when it changes.",
    ),
    SourceSetting(
        "secret_keys",
        "DOWNLINK_FUEL_SECRET_KEYS",
        DEFAULT_SECRET_KEYS,
        "Regular expression of key names whose values are replaced before storage.",
    ),
    SourceSetting(
        "webhook_url",
        "DOWNLINK_FUEL_WEBHOOK_URL",
        "",
        "URL that receives a JSON POST for every failed deployment or operation.",
    ),
    SourceSetting(
        "smtp_host",
        "DOWNLINK_FUEL_SMTP_HOST",
        "",
        "host:port of the SMTP server that mails failure reports; empty sends no mail.",
    ),
    SourceSetting(
        "mail_from",
        "DOWNLINK_FUEL_MAIL_FROM",
        "downlink@localhost",
        "Sender address of failure report mails.",
    ),
    SourceSetting(
        "mail_to",
        "DOWNLINK_FUEL_MAIL_TO",
        (),
        "Comma-separated addresses of the support team receiving failure reports.",
    ),
    SourceSetting(
        "notify_attempts",
        "DOWNLINK_FUEL_NOTIFY_ATTEMPTS",
        8,
        "Delivery attempts of one failure report per channel before it is marked failed.",
    ),
    SourceSetting(
        "notify_backoff_s",
        "DOWNLINK_FUEL_NOTIFY_BACKOFF_S",
        2.0,
        "First retry delay of a failed delivery (s); doubles with each attempt.",
    ),
    SourceSetting(
        "report_cache_s",
        "DOWNLINK_FUEL_REPORT_CACHE_S",
        3600.0,
        "How long report/installations answers are cached (s); 0 disables the cache.",
    ),
)


@dataclass(frozen=True)
class FuelSettings:
    """The parsed fuel-stats settings."""

    filtering_rules: str = ""
    secret_keys: str = DEFAULT_SECRET_KEYS
    webhook_url: str = ""
    smtp_host: str = ""
    mail_from: str = "downlink@localhost"
    mail_to: tuple[str, ...] = ()
    notify_attempts: int = 8
    notify_backoff_s: float = 2.0
    report_cache_s: float = 3600.0

    @property
    def rules_path(self) -> Path | None:
        """The filtering rules file, if one is configured."""
        return Path(self.filtering_rules) if self.filtering_rules else None

    @property
    def channels(self) -> tuple[str, ...]:
        """The notification channels that are configured."""
        found = []
        if self.webhook_url:
            found.append("webhook")
        if self.smtp_host and self.mail_to:
            found.append("email")
        return tuple(found)


def _parse(setting: SourceSetting, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    default = setting.default
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{setting.env}={raw!r} is not a valid value: {exc}") from exc
    return raw


def load(values: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> (
    FuelSettings
):
    """Settings from ``values`` (by name) over the environment (by variable)."""
    env = os.environ if environ is None else environ
    given = dict(values or {})
    parsed: dict[str, Any] = {}
    for s in SETTINGS:
        if s.name in given:
            parsed[s.name] = _parse(s, given[s.name])
        elif env.get(s.env):
            parsed[s.name] = _parse(s, env[s.env])
    found = FuelSettings(**parsed)
    if found.notify_attempts < 1 or found.notify_backoff_s < 0 or found.report_cache_s < 0:
        raise SettingsError("fuel-stats notify/report settings must not be negative")
    return found
