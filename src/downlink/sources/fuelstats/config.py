"""The fuel-stats source's settings (declared as :class:`SourceSetting` entries)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downlink.settings import SettingsError
from downlink.sources.base import SourceSetting
from downlink.sources.fuelstats.privacy import DEFAULT_SECRET_KEYS


def _check_pattern(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


def _at_least(value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"must be at least {low}")


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
        "",
        "Regular expression of key names whose values are replaced before storage; empty: "
        "the built-in one (passwords, secrets, tokens, keys, credentials, certificates).",
        check=lambda value: _check_pattern(value),
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
        check=lambda value: _at_least(value, 1),
    ),
    SourceSetting(
        "notify_backoff_s",
        "DOWNLINK_FUEL_NOTIFY_BACKOFF_S",
        2.0,
        "First retry delay of a failed delivery (s); doubles with each attempt.",
        check=lambda value: _at_least(value, 0),
    ),
    SourceSetting(
        "report_cache_s",
        "DOWNLINK_FUEL_REPORT_CACHE_S",
        3600.0,
        "How long report/installations answers are cached (s); 0 disables the cache.",
        check=lambda value: _at_least(value, 0),
    ),
)


@dataclass(frozen=True)
class FuelSettings:
    """The parsed fuel-stats settings."""

    filtering_rules: str = ""
    secret_keys: str = ""
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
    def secret_pattern(self) -> str:
        """The secret-key pattern in force."""
        return self.secret_keys or DEFAULT_SECRET_KEYS

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
    for s in SETTINGS:
        if s.check is not None and s.name in parsed:
            try:
                s.check(parsed[s.name])
            except ValueError as exc:
                raise SettingsError(f"{s.env}: {exc}") from None
    return FuelSettings(**parsed)
